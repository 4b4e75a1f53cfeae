# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_wfctl_global_optspecs
    string join \n socket= addr= token-file= ca= cert= key= json h/help V/version
end

function __fish_wfctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_wfctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_wfctl_using_subcommand
    set -l cmd (__fish_wfctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c wfctl -n "__fish_wfctl_needs_command" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_needs_command" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_needs_command" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_needs_command" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_needs_command" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_needs_command" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_needs_command" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_needs_command" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_needs_command" -s V -l version -d 'Print version'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "spawn" -d 'Start a run: wfctl spawn [OPTIONS] WORKFLOW PROMPT, or wfctl spawn [OPTIONS] -- CMD [ARGS]...'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "ps" -d 'List runs, newest first'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "get" -d 'Show one run in detail'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "kill" -d 'End a live run: stop signals, grace, KILL, verify, cleanup'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "restart" -d 'End a run if live and start a new run with the same spec (--resume: its Claude session)'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "complete" -d 'Mark a run succeeded or failed by an operator\'s word (a live run is force-killed first)'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "logs" -d 'Print a run\'s output: stdout to stdout, stderr to stderr, as raw bytes'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "watch" -d 'Print one line per state change of one run, or of every run'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "purge" -d 'Remove finished runs and their logs: one by id, or all of one status (audit kept)'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "audit" -d 'Show the audit trail, newest first: every mutating call and automatic action'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "health" -d 'Show live and total runs, containment, and unacknowledged alerts (exit 4 if any)'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "ack" -d 'Acknowledge an alert so that `health` no longer reports it'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "alerts" -d 'List the alerts firing and not yet acknowledged (the ones webhooks are sent)'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "workflows" -d 'List the workflow templates the daemon\'s config defines'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "cancel" -d 'End queued or live work: one run, or every run a selector matches (--yes to do it)'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "queue" -d 'Show the queues and their health; pause, resume or limit one'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "wait" -d 'Block until runs have ended; exit 0 if all SUCCEEDED (else see `wfctl wait --help`)'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "token" -d 'Make a token for TCP callers: wfctl token create NAME --role ROLE'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "completions" -d 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "mcp" -d 'Serve MCP on stdin/stdout for an orchestrating agent (`claude mcp add wf -- wfctl mcp`)'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "top" -d 'A full-screen live view of runs and queues, with keys to kill, restart and cancel'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l cwd -d 'Working directory of the run (relative paths are taken from here); default: the workflow\'s, else the daemon\'s' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -s e -l env -d 'An environment variable for the run; repeatable' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -s l -l label -d 'A label on the run; repeatable' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l stop-signal -d 'A signal sent at a graceful kill, in order; repeatable (default: the workflow\'s, INT then TERM, or the daemon\'s, TERM)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l grace -d 'Grace between the first stop signal and KILL, e.g. 5s (default: the workflow\'s or the daemon\'s)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l queue -d 'The queue to wait in for a slot (default: the workflow\'s, else "default")' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l priority -d 'Higher starts first (default 0); then the oldest' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l after -d 'Start only once this run has SUCCEEDED (if it fails, this run is cancelled); repeatable' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l not-before -d 'Do not start earlier: HH:MM[:SS] (UTC, the next such time), +DURATION, or Unix ms' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l timeout -d 'Wall-clock limit once running, e.g. 1h: then the run ends TIMED_OUT' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l queue-timeout -d 'The longest it may wait to start, e.g. 10m: then it ends CANCELLED, never started' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l restart -d 'Restart on these ends as a new linked run after a backoff: on-failure (failed, timed_out and lost), or a comma list of failed, timed_out, lost' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l max-restarts -d 'With --restart: at most this many restarts (default 3)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l restart-backoff -d 'With --restart: the first backoff, doubled each time (default 10s, at most 5m)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l idempotency-key -d 'A retried spawn with the same key (within 24 hours) returns the first run instead' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l model -d 'The model instead of the template\'s' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l max-turns -d 'At most this many turns instead of the template\'s limit' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l permission-mode -d 'The permission mode instead of the template\'s, e.g. acceptEdits, plan' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l allowed-tool -d 'An allowed tool, e.g. Read or \'Bash(git diff:*)\'; repeatable. The tools given replace the template\'s list' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l append-system-prompt -d 'Text appended to the system prompt instead of the template\'s' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -s s -l status -d 'Only runs in these statuses (repeatable or comma-separated): queued, starting, running, stopping, succeeded, failed, killed, cancelled, timed_out, lost' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -s n -l limit -d 'At most this many runs (the newest)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l queue -d 'Only runs of this queue' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l workflow -d 'Only runs of this workflow' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -s l -l label -d 'Only runs with this label; repeatable (all must match)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -s a -l all -d 'Every run, whatever its status and however many (the default; overrides nothing else)'
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l no-trunc -d 'Show whole commands instead of cutting them at 60 characters'
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l no-trunc -d 'Show a workflow run\'s whole prompt and result text instead of cutting them at 160 characters'
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l selector -d 'Every queued or live run that matches, e.g. workflow=builder,status=running (see `wfctl cancel --help`)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l grace -d 'Grace for this kill, e.g. 5s (default: the run\'s own grace)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l reason -d 'Why, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l yes -d 'With --selector: do it (without, the matching runs are only listed)'
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -s f -l force -d 'Straight to KILL, no stop signals and no grace'
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l reason -d 'Why, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l resume -d 'For a workflow run: continue its Claude session instead of starting afresh (without a session id the new run starts fresh, and the note says so)'
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l reason -d 'Why, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l succeeded -d 'Mark the run succeeded'
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l failed -d 'Mark the run failed'
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l tail -d 'How much of the end of each stream to print first, e.g. 4096, 64K, 1M (default: 64K)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -s f -l follow -d 'Keep printing new output until the run ends'
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -s s -l status -d 'Instead of one run, every run in this finished status: succeeded, failed, killed, cancelled, timed_out, lost' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l older-than -d 'With --status: only runs that ended at least this long ago, e.g. 7d, 12h' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l reason -d 'Why, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -s f -l force -d 'Purge the run even if it is live: force-kill it first'
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l since -d 'Only records from the last DURATION, e.g. 1h, 30m, 7d' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -s n -l limit -d 'At most this many records, the newest (default: the daemon\'s, 1000)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l no-trunc -d 'Show whole messages instead of cutting them at 60 characters'
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l note -d 'What was done about it, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand alerts" -l kind -d 'Only alerts of these kinds (repeatable or comma-separated), e.g. stuck_run' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand alerts" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand alerts" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand alerts" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand alerts" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand alerts" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand alerts" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand alerts" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand alerts" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -l selector -d 'Every queued or live run that matches: comma-separated KEY=VALUE parts, all of which must match: workflow=NAME, queue=NAME, status=STATUS (repeatable), any other KEY a label' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -l reason -d 'Why, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -l yes -d 'With --selector: do it (without, the matching runs are only listed)'
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand cancel" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -f -a "pause" -d 'Hold back new starts of a queue (running runs go on)'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -f -a "resume" -d 'Let a paused queue start runs again'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -f -a "limit" -d 'Set a queue\'s max_concurrent until the next reload (lowering it kills nothing)'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and not __fish_seen_subcommand_from pause resume limit help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from pause" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from pause" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from pause" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from pause" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from pause" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from pause" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from pause" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from resume" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from resume" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from resume" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from resume" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from resume" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from resume" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from resume" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from limit" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from limit" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from limit" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from limit" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from limit" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from limit" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from limit" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from limit" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "pause" -d 'Hold back new starts of a queue (running runs go on)'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Let a paused queue start runs again'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "limit" -d 'Set a queue\'s max_concurrent until the next reload (lowering it kills nothing)'
complete -c wfctl -n "__fish_wfctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wfctl -n "__fish_wfctl_using_subcommand wait" -l timeout -d 'Give up after this long, e.g. 30m (default: wait as long as it takes)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand wait" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand wait" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand wait" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand wait" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand wait" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand wait" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand wait" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand wait" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and not __fish_seen_subcommand_from create help" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and not __fish_seen_subcommand_from create help" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and not __fish_seen_subcommand_from create help" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and not __fish_seen_subcommand_from create help" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and not __fish_seen_subcommand_from create help" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and not __fish_seen_subcommand_from create help" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and not __fish_seen_subcommand_from create help" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and not __fish_seen_subcommand_from create help" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and not __fish_seen_subcommand_from create help" -f -a "create" -d 'Print a new secret (line 1) and its tokens-file line (line 2)'
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and not __fish_seen_subcommand_from create help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from create" -l role -d 'viewer, operator or admin' -r -f -a "viewer\t''
operator\t''
admin\t''"
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from create" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from create" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from create" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from create" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from create" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from create" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from create" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "create" -d 'Print a new secret (line 1) and its tokens-file line (line 2)'
complete -c wfctl -n "__fish_wfctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand mcp" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand mcp" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand mcp" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand mcp" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand mcp" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand mcp" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand mcp" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand mcp" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand top" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand top" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. https://host:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand top" -l token-file -d 'On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand top" -l ca -d 'With an https:// --addr: the CA certificate (PEM) that signed the daemon\'s certificate' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand top" -l cert -d 'With an https:// --addr: a client certificate (PEM) for mTLS, with --key' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand top" -l key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand top" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand top" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "spawn" -d 'Start a run: wfctl spawn [OPTIONS] WORKFLOW PROMPT, or wfctl spawn [OPTIONS] -- CMD [ARGS]...'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "ps" -d 'List runs, newest first'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "get" -d 'Show one run in detail'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "kill" -d 'End a live run: stop signals, grace, KILL, verify, cleanup'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "restart" -d 'End a run if live and start a new run with the same spec (--resume: its Claude session)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "complete" -d 'Mark a run succeeded or failed by an operator\'s word (a live run is force-killed first)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "logs" -d 'Print a run\'s output: stdout to stdout, stderr to stderr, as raw bytes'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "watch" -d 'Print one line per state change of one run, or of every run'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "purge" -d 'Remove finished runs and their logs: one by id, or all of one status (audit kept)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "audit" -d 'Show the audit trail, newest first: every mutating call and automatic action'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "health" -d 'Show live and total runs, containment, and unacknowledged alerts (exit 4 if any)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "ack" -d 'Acknowledge an alert so that `health` no longer reports it'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "alerts" -d 'List the alerts firing and not yet acknowledged (the ones webhooks are sent)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "workflows" -d 'List the workflow templates the daemon\'s config defines'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "cancel" -d 'End queued or live work: one run, or every run a selector matches (--yes to do it)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "queue" -d 'Show the queues and their health; pause, resume or limit one'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "wait" -d 'Block until runs have ended; exit 0 if all SUCCEEDED (else see `wfctl wait --help`)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "token" -d 'Make a token for TCP callers: wfctl token create NAME --role ROLE'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "completions" -d 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "mcp" -d 'Serve MCP on stdin/stdout for an orchestrating agent (`claude mcp add wf -- wfctl mcp`)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "top" -d 'A full-screen live view of runs and queues, with keys to kill, restart and cancel'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack alerts workflows cancel queue wait token completions mcp top help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "pause" -d 'Hold back new starts of a queue (running runs go on)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "resume" -d 'Let a paused queue start runs again'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "limit" -d 'Set a queue\'s max_concurrent until the next reload (lowering it kills nothing)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "create" -d 'Print a new secret (line 1) and its tokens-file line (line 2)'
