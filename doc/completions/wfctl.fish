# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_wfctl_global_optspecs
    string join \n socket= addr= json h/help V/version
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
complete -c wfctl -n "__fish_wfctl_needs_command" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
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
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "workflows" -d 'List the workflow templates the daemon\'s config defines'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "completions" -d 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
complete -c wfctl -n "__fish_wfctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l cwd -d 'Working directory of the run (relative paths are taken from here); default: the workflow\'s, else the daemon\'s' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -s e -l env -d 'An environment variable for the run; repeatable' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -s l -l label -d 'A label on the run; repeatable' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l stop-signal -d 'A signal sent at a graceful kill, in order; repeatable (default: the workflow\'s, INT then TERM, or the daemon\'s, TERM)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l grace -d 'Grace between the first stop signal and KILL, e.g. 5s (default: the workflow\'s or the daemon\'s)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l model -d 'The model instead of the template\'s' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l max-turns -d 'At most this many turns instead of the template\'s limit' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l permission-mode -d 'The permission mode instead of the template\'s, e.g. acceptEdits, plan' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l allowed-tool -d 'An allowed tool, e.g. Read or \'Bash(git diff:*)\'; repeatable. The tools given replace the template\'s list' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l append-system-prompt -d 'Text appended to the system prompt instead of the template\'s' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand spawn" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -s s -l status -d 'Only runs in these statuses (repeatable or comma-separated): queued, starting, running, stopping, succeeded, failed, killed, cancelled, timed_out, lost' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -s n -l limit -d 'At most this many runs (the newest)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -s a -l all -d 'Every run, whatever its status and however many (the default; overrides nothing else)'
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l no-trunc -d 'Show whole commands instead of cutting them at 60 characters'
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand ps" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l no-trunc -d 'Show a workflow run\'s whole prompt and result text instead of cutting them at 160 characters'
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand get" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l grace -d 'Grace for this kill, e.g. 5s (default: the run\'s own grace)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l reason -d 'Why, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -s f -l force -d 'Straight to KILL, no stop signals and no grace'
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand kill" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l reason -d 'Why, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l resume -d 'For a workflow run: continue its Claude session instead of starting afresh (without a session id the new run starts fresh, and the note says so)'
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand restart" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l reason -d 'Why, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l succeeded -d 'Mark the run succeeded'
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l failed -d 'Mark the run failed'
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand complete" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l tail -d 'How much of the end of each stream to print first, e.g. 4096, 64K, 1M (default: 64K)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -s f -l follow -d 'Keep printing new output until the run ends'
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand logs" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand watch" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -s s -l status -d 'Instead of one run, every run in this finished status: succeeded, failed, killed, cancelled, timed_out, lost' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l older-than -d 'With --status: only runs that ended at least this long ago, e.g. 7d, 12h' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l reason -d 'Why, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -s f -l force -d 'Purge the run even if it is live: force-kill it first'
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand purge" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l since -d 'Only records from the last DURATION, e.g. 1h, 30m, 7d' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -s n -l limit -d 'At most this many records, the newest (default: the daemon\'s, 1000)' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l no-trunc -d 'Show whole messages instead of cutting them at 60 characters'
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand audit" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand health" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l note -d 'What was done about it, for the record' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand ack" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand workflows" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -l socket -d 'Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon\'s default)' -r -F
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -l addr -d 'Reach the daemon\'s TCP listener instead of the socket, e.g. http://127.0.0.1:7443' -r
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -l json -d 'Print machine-readable JSON (one object per response; one per line for streams)'
complete -c wfctl -n "__fish_wfctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "spawn" -d 'Start a run: wfctl spawn [OPTIONS] WORKFLOW PROMPT, or wfctl spawn [OPTIONS] -- CMD [ARGS]...'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "ps" -d 'List runs, newest first'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "get" -d 'Show one run in detail'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "kill" -d 'End a live run: stop signals, grace, KILL, verify, cleanup'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "restart" -d 'End a run if live and start a new run with the same spec (--resume: its Claude session)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "complete" -d 'Mark a run succeeded or failed by an operator\'s word (a live run is force-killed first)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "logs" -d 'Print a run\'s output: stdout to stdout, stderr to stderr, as raw bytes'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "watch" -d 'Print one line per state change of one run, or of every run'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "purge" -d 'Remove finished runs and their logs: one by id, or all of one status (audit kept)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "audit" -d 'Show the audit trail, newest first: every mutating call and automatic action'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "health" -d 'Show live and total runs, containment, and unacknowledged alerts (exit 4 if any)'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "ack" -d 'Acknowledge an alert so that `health` no longer reports it'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "workflows" -d 'List the workflow templates the daemon\'s config defines'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "completions" -d 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
complete -c wfctl -n "__fish_wfctl_using_subcommand help; and not __fish_seen_subcommand_from spawn ps get kill restart complete logs watch purge audit health ack workflows completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
