fn main() -> anyhow::Result<()> {
    wf_supervisor::daemon::main()
}
