//! Throwaway users and groups for the access tests, and connections made as them.
//!
//! [`Users`] creates system users and groups with `useradd`/`groupadd` (as root) under names
//! unique to this test process, and removes every one of them when dropped, also when the test
//! failed. [`connect_as`] opens a unix-socket connection from a fresh thread that first drops
//! to the user's uid, gid and supplementary groups with the raw system calls (which, unlike
//! libc's wrappers, change only the calling thread), so the daemon's SO_PEERCRED and
//! SO_PEERGROUPS see exactly that user; the thread ends right after, and the test process keeps
//! its root credentials. [`client_as`] makes a gRPC client whose every connection is made that
//! way.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};
use wf_supervisor::proto::supervisor_client::SupervisorClient;

use super::unique;

/// A throwaway user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    /// Its own primary group.
    pub gid: u32,
    /// Supplementary groups it was created with.
    pub groups: Vec<u32>,
}

/// A throwaway group.
#[derive(Debug, Clone)]
pub struct TestGroup {
    pub name: String,
    pub gid: u32,
}

/// The users and groups one test made; removed on drop.
pub struct Users {
    users: Vec<String>,
    groups: Vec<String>,
}

/// Runs an account tool, retrying while another process holds the account files' lock.
fn account_tool(program: &str, args: &[&str]) -> Result<(), String> {
    for _ in 0..100 {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        // Exit 10 (useradd, groupadd) / 10 (userdel): cannot lock the files; try again.
        if out.status.code() == Some(10) || err.contains("lock") {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        return Err(format!("{program} {args:?}: {}: {err}", out.status));
    }
    Err(format!(
        "{program} {args:?}: the account files stayed locked"
    ))
}

impl Users {
    /// None (with the reason printed) unless the tests run as root with the account tools.
    pub fn new() -> Option<Users> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: the access tests create users and need root");
            return None;
        }
        if !Path::new("/usr/sbin/useradd").exists() {
            eprintln!("skipping: no useradd on this machine");
            return None;
        }
        Some(Users {
            users: Vec::new(),
            groups: Vec::new(),
        })
    }

    /// A short name unique to this process: `wft<tag><pid>x<n>` (names stay under 32 bytes).
    fn name(tag: &str) -> String {
        unique(&format!("wft{tag}")).replace('-', "x")
    }

    /// A new group.
    pub fn group(&mut self, tag: &str) -> TestGroup {
        let name = Users::name(tag);
        account_tool("groupadd", &["--system", &name]).expect("groupadd");
        self.groups.push(name.clone());
        let g = nix::unistd::Group::from_name(&name)
            .expect("group lookup")
            .expect("the new group exists");
        TestGroup {
            name,
            gid: g.gid.as_raw(),
        }
    }

    /// A new user with its own primary group and these supplementary groups.
    pub fn user(&mut self, tag: &str, groups: &[&TestGroup]) -> TestUser {
        let name = Users::name(tag);
        let list: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let list = list.join(",");
        let mut args = vec![
            "--system",
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
        ];
        if !list.is_empty() {
            args.push("--groups");
            args.push(&list);
        }
        args.push(&name);
        account_tool("useradd", &args).expect("useradd");
        self.users.push(name.clone());
        let u = nix::unistd::User::from_name(&name)
            .expect("user lookup")
            .expect("the new user exists");
        TestUser {
            name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            groups: groups.iter().map(|g| g.gid).collect(),
        }
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        for u in &self.users {
            if let Err(e) = account_tool("userdel", &[u]) {
                eprintln!("cleanup: {e}");
            }
        }
        for g in &self.groups {
            if let Err(e) = account_tool("groupdel", &[g]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Credentials to connect with.
#[derive(Debug, Clone)]
pub struct As {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl TestUser {
    /// This user with its supplementary groups.
    pub fn creds(&self) -> As {
        As {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        }
    }

    /// This user without any supplementary group.
    pub fn creds_without_groups(&self) -> As {
        As {
            uid: self.uid,
            gid: self.gid,
            groups: Vec::new(),
        }
    }
}

/// Connects to `socket` from a new thread that has dropped to `who` first.
pub fn connect_as(socket: &Path, who: &As) -> std::io::Result<std::os::unix::net::UnixStream> {
    let socket = socket.to_path_buf();
    let who = who.clone();
    std::thread::spawn(move || {
        // Safety: raw syscalls on this thread only, with valid arguments; the buffer holds
        // `groups.len()` gids. The thread ends right after, so no other code runs with these
        // credentials.
        unsafe {
            let gids: Vec<libc::gid_t> = who.groups.clone();
            if libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) != 0
                || libc::syscall(libc::SYS_setresgid, who.gid, who.gid, who.gid) != 0
                || libc::syscall(libc::SYS_setresuid, who.uid, who.uid, who.uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        std::os::unix::net::UnixStream::connect(&socket)
    })
    .join()
    .expect("the connecting thread")
}

/// A client of the daemon at `socket` whose connections are made as `who`.
pub fn client_as(socket: &Path, who: &As) -> SupervisorClient<Channel> {
    let path: PathBuf = socket.to_path_buf();
    let who = who.clone();
    let channel = Endpoint::from_static("http://localhost")
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(tower::service_fn(move |_| {
            let (path, who) = (path.clone(), who.clone());
            async move {
                let s = connect_as(&path, &who)?;
                s.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::from_std(s)?))
            }
        }));
    SupervisorClient::new(channel)
}
