//! The CLI as the README uses it: a client of the HTTP API, human or `--json` output,
//! a failing exit status with the server's error code when a command is refused.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{Crew, Server};

fn dispatch(s: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(["ticket", "--server", &s.url, "--token", token])
        .args(args)
        .env_remove("DISPATCH_TOKEN")
        .output()
        .unwrap()
}

#[tokio::test]
async fn cli_drives_a_ticket_and_reports_refusals() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;

    let out = dispatch(
        &s,
        &crew.dispatcher,
        &[
            "--json",
            "create",
            "--account",
            "acct-1",
            "--site",
            "site-1",
            "--incident-type",
            "LOCKOUT",
            "--summary",
            "locked out",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ticket: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = ticket["id"].as_str().unwrap();

    let out = dispatch(&s, &crew.dispatcher, &["triage", id, "--outcome", "READY_TO_SCHEDULE"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("READY_TO_SCHEDULE"), "human output names the state");

    // Refused: a non-zero exit and the server's code on stderr; nothing written.
    let out = dispatch(&s, &crew.dispatcher, &["close", id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FORBIDDEN"), "{}", String::from_utf8_lossy(&out.stderr));

    // Retrying with the same --idempotency-key is safe.
    for _ in 0..2 {
        let out =
            dispatch(&s, &crew.dispatcher, &["--idempotency-key", "cancel-1", "cancel", id, "--reason", "duplicate"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = dispatch(&s, &crew.dispatcher, &["timeline", id]);
    let timeline = String::from_utf8_lossy(&out.stdout);
    assert_eq!(timeline.lines().skip(1).count(), 3, "a header, then created, triaged, cancelled once:\n{timeline}");
    assert!(timeline.contains("ticket.cancelled"));
}

#[tokio::test]
async fn login_keeps_tokens_private_and_refreshes_them() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = support::tempdir();
    let config = support::tempdir();
    let s = Server::start(dir.path());
    s.add_person("ann", "correct horse battery").await;
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .args(args)
            .args(["--server", &s.url])
            .env("DISPATCH_CONFIG_DIR", config.path())
            .env_remove("DISPATCH_TOKEN")
            .current_dir(config.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut login = cli(&["login", "--username", "ann"]);
    login.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
    assert!(login.wait_with_output().unwrap().status.success());
    let file = config.path().join("credentials.json");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    let out = cli(&["ticket", "list"]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // An expired access token is refreshed (and the rotated refresh token stored).
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let name = stored["current"].as_str().unwrap().to_owned();
    let old_refresh = stored["contexts"][&name]["refresh_token"].clone();
    stored["contexts"][&name]["access_expires_at"] = 0.into();
    std::fs::write(&file, serde_json::to_vec(&stored).unwrap()).unwrap();
    let out = cli(&["ticket", "list"]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_ne!(stored["contexts"][&name]["refresh_token"], old_refresh);
    assert!(stored["contexts"][&name]["access_expires_at"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn up_creates_the_first_admin_account_once() {
    let dir = support::tempdir();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "a very long admin passphrase\n").unwrap();
    let data = dir.path().join("data");
    let s = Server::start_with(&data, &["--admin-password-file", secret.to_str().unwrap()]);
    let login = serde_json::json!({ "username": "admin", "password": "a very long admin passphrase" });
    let (status, pair) = s.send("POST", "/v1/auth/login", "", None, Some(login.clone())).await;
    assert_eq!(status, 200, "{pair}");
    let (_, me) = s.send("GET", "/v1/me", pair["access_token"].as_str().unwrap(), None, None).await;
    assert_eq!(me["principal"]["role"], "admin");
    s.stop();
    // A restart does not create it again (or change its password).
    std::fs::write(&secret, "another passphrase entirely").unwrap();
    let s = Server::start_with(&data, &["--admin-password-file", secret.to_str().unwrap()]);
    assert_eq!(s.send("POST", "/v1/auth/login", "", None, Some(login)).await.0, 200);
    let (_, users) = s.send("GET", "/v1/users", &s.admin_token, None, None).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
}

/// Reads `out` until `needle` has appeared (bounded by the child's exit or 20 s of bytes).
fn read_until(out: &mut impl std::io::Read, seen: &mut Vec<u8>, needle: &[u8]) {
    let mut buf = [0u8; 256];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "ended before {:?}: {}", String::from_utf8_lossy(needle), String::from_utf8_lossy(seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn login_on_a_terminal_does_not_echo_the_password() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    s.add_person("ann", "quiet-password-42").await;
    let config = support::tempdir();
    // `script` gives the CLI a real terminal (a pty); the password goes in only once
    // the prompt is shown, so an echo would come back on the pty's output.
    let command = format!("{} login --username ann --server {}", env!("CARGO_BIN_EXE_dispatch"), s.url);
    let Ok(mut child) = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("DISPATCH_CONFIG_DIR", config.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    else {
        eprintln!(
            "!!! SKIPPING login_on_a_terminal_does_not_echo_the_password: no `script` (bsdutils) to make a pty !!!"
        );
        return;
    };
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    read_until(&mut out, &mut seen, b"password for ann: ");
    child.stdin.as_mut().unwrap().write_all(b"quiet-password-42\n").unwrap();
    read_until(&mut out, &mut seen, b"logged in as ann");
    assert!(child.wait().unwrap().success());
    let text = String::from_utf8_lossy(&seen);
    assert!(!text.contains("quiet-password-42"), "the password was echoed: {text:?}");
}

/// A task no node can take says why — in `task run`'s output and in `task status` — and
/// `--wait-timeout` gives up with exit code 124, leaving it queued.
#[tokio::test]
async fn a_task_nobody_can_run_says_why_and_the_wait_can_be_given_up() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let task = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .args(["task", "--server", &s.url, "--token", &s.admin_token])
            .args(args)
            .env_remove("DISPATCH_TOKEN")
            .output()
            .unwrap()
    };
    let run = task(&["run", "--label", "zone=a", "--wait-timeout", "5s", "--", "sh", "-c", "cat data/in.txt"]);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(124), "{stderr}");
    let id = stderr.split("dispatch: task ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
    // The first rule the local node fails: the engine when this machine has none, else the label.
    let (_, node) = s.send("GET", "/v1/nodes/node-1", &s.admin_token, None, None).await;
    let reason = if node["capabilities"]["docker_version"].is_null() {
        eprintln!("!!! no Docker Engine on this machine: checking the no-engine reason instead of the label one !!!");
        "no active node has a container engine"
    } else {
        "no active node carries the label(s) zone=a"
    };
    assert!(stderr.contains(&format!("dispatch: waiting: {reason}")), "{stderr}");
    assert!(stderr.contains(&format!("gave up waiting; task {id} is still QUEUED")), "{stderr}");
    let status = task(&["status", &id]);
    let shown = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(shown.contains("QUEUED") && shown.contains(&format!("waiting: {reason}")), "{shown}");
    let (_, json) = s.send("GET", &format!("/v1/tasks/{id}"), &s.admin_token, None, None).await;
    assert!(json["waiting"].as_str().unwrap().starts_with(reason), "{json}");
}

fn dispatch_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dispatch")).args(args).env_remove("DISPATCH_TOKEN").output().unwrap()
}

/// whoami, logout, tokens with queues and human lifetimes, errors in plain words, each
/// cause said once, and no colour codes in a log file.
#[tokio::test]
async fn the_cli_says_who_you_are_and_what_went_wrong_plainly() {
    let dir = support::tempdir();
    let s = Server::start_logging(dir.path(), &[], "info");
    let minted = dispatch_cmd(&[
        "admin",
        "token",
        "--server",
        &s.url,
        "--token",
        &s.admin_token,
        "--sub",
        "olga",
        "--role",
        "operator",
        "--queues",
        "refunds,billing",
        "--ttl",
        "2h",
    ]);
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let olga = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let who = dispatch_cmd(&["whoami", "--server", &s.url, "--token", &olga]);
    let who = String::from_utf8(who.stdout).unwrap();
    assert!(who.starts_with("olga (operator)") && who.contains("queues:   refunds,billing"), "{who}");
    assert!(who.contains("expires:  in 1h59m") || who.contains("expires:  in 2h00m"), "{who}");

    let refused = dispatch_cmd(&["whoami", "--server", &s.url, "--token", "not-a-token"]);
    let text = String::from_utf8(refused.stderr).unwrap();
    assert!(text.contains("not a token") && !text.contains("InvalidToken"), "{text}");
    let no_scheme = dispatch_cmd(&["whoami", "--server", "localhost:8080", "--token", &olga]);
    let text = String::from_utf8(no_scheme.stderr).unwrap();
    assert!(text.contains("--server needs a scheme: http://localhost:8080"), "{text}");
    let unreachable = dispatch_cmd(&["whoami", "--server", "http://127.0.0.1:9", "--token", &olga]);
    let text = String::from_utf8(unreachable.stderr).unwrap();
    let parts: Vec<&str> = text.trim().trim_start_matches("error: ").split(": ").collect();
    assert!(parts.iter().enumerate().all(|(i, p)| !parts[i + 1..].contains(p)), "a cause said twice: {text}");

    // logout ends the stored login's session and forgets it.
    s.add_person("ann", "a-long-passphrase-1").await;
    let config = support::tempdir();
    let with_config = |args: &[&str], stdin: &str| with_config_dir(config.path(), args, stdin);
    assert!(with_config(&["login", "--server", &s.url, "--username", "ann"], "a-long-passphrase-1\n").status.success());
    let stored: Value =
        serde_json::from_slice(&std::fs::read(config.path().join("credentials.json")).unwrap()).unwrap();
    let refresh = stored["contexts"][stored["current"].as_str().unwrap()]["refresh_token"].clone();
    let out = with_config(&["logout"], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("logged out of"), "{out:?}");
    let left: Value = serde_json::from_slice(&std::fs::read(config.path().join("credentials.json")).unwrap()).unwrap();
    assert_eq!(left["contexts"], serde_json::json!({}), "the login is forgotten here");
    let (status, _) =
        s.send("POST", "/v1/auth/refresh", "", None, Some(serde_json::json!({ "refresh_token": refresh }))).await;
    assert_eq!(status, 401, "the session ended on the server too");

    let log = std::fs::read_to_string(Server::log_path(dir.path())).unwrap();
    assert!(!log.is_empty() && !log.contains('\u{1b}'), "colour codes in the log file");
}

#[test]
fn completions_are_generated_for_bash_and_parse() {
    let script = dispatch_cmd(&["completions", "bash"]);
    assert!(script.status.success());
    let text = String::from_utf8(script.stdout).unwrap();
    assert!(text.contains("dispatch") && text.contains("whoami"), "{}", &text[..200.min(text.len())]);
    let dir = support::tempdir();
    let path = dir.path().join("dispatch.bash");
    std::fs::write(&path, &text).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
}

/// Client options before the command work as after it (the one after wins), and with no
/// token anywhere the CLI says where it looked.
#[tokio::test]
async fn client_options_go_before_or_after_the_command_and_a_missing_token_is_explained() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let before = dispatch_cmd(&["--server", &s.url, "--token", &s.admin_token, "whoami"]);
    assert!(String::from_utf8_lossy(&before.stdout).starts_with("admin"), "{before:?}");
    let before_group = dispatch_cmd(&["--token", &s.admin_token, "--server", &s.url, "ticket", "list", "--json"]);
    assert!(before_group.status.success(), "{}", String::from_utf8_lossy(&before_group.stderr));
    let after_wins =
        dispatch_cmd(&["--token", "not-a-token", "ticket", "list", "--server", &s.url, "--token", &s.admin_token]);
    assert!(after_wins.status.success(), "{}", String::from_utf8_lossy(&after_wins.stderr));

    let elsewhere = support::tempdir();
    let config = support::tempdir();
    let none = Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(["ticket", "list", "--server", &s.url])
        .current_dir(elsewhere.path())
        .env("DISPATCH_CONFIG_DIR", config.path())
        .env_remove("DISPATCH_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success());
    for place in ["--token", "$DISPATCH_TOKEN", "credentials.json", "./dispatch-data/admin-token"] {
        assert!(text.contains(place), "{place} not named in: {text}");
    }
}

/// Two logins kept side by side as contexts: a second login does not replace the first,
/// `--context` picks one for a command, `context use` switches.
#[tokio::test]
async fn two_contexts_are_used_side_by_side() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    s.add_person("ann", "a-long-passphrase-1").await;
    s.add_person("olga", "a-long-passphrase-2").await;
    let config = support::tempdir();
    let cli = |args: &[&str], stdin: &str| {
        let out = with_config_dir(config.path(), args, stdin);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) =
        cli(&["login", "--server", &s.url, "--username", "ann", "--context", "ann-dispatch"], "a-long-passphrase-1\n");
    assert!(ok && said.contains("context ann-dispatch is now current"), "{said}");
    let (ok, said) = cli(&["login", "--server", &s.url, "--username", "olga"], "a-long-passphrase-2\n");
    assert!(ok, "{said}");
    let olga_context = said.split("context ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();

    // No --server: the context knows it. The current one is olga's; --context picks ann's.
    let (_, who) = cli(&["whoami"], "");
    assert!(who.starts_with("olga "), "{who}");
    let (_, who) = cli(&["--context", "ann-dispatch", "whoami"], "");
    assert!(who.starts_with("ann "), "{who}");
    let (_, listed) = cli(&["context", "list"], "");
    assert!(listed.contains(&format!("* {olga_context}")) && listed.contains("  ann-dispatch"), "{listed}");
    let (ok, _) = cli(&["context", "use", "ann-dispatch"], "");
    assert!(ok);
    let (_, who) = cli(&["whoami"], "");
    assert!(who.starts_with("ann "), "{who}");
    let (ok, said) = cli(&["--context", "nobody", "whoami"], "");
    assert!(!ok && said.contains("no context \"nobody\""), "{said}");
}

#[test]
fn version_names_the_data_format_and_the_protocol() {
    let out = dispatch_cmd(&["version", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["data_format"], storage::FORMAT_VERSION);
    assert_eq!(v["cluster_protocol"], cluster::wire::PROTOCOL_VERSION);
    let human = String::from_utf8(dispatch_cmd(&["version"]).stdout).unwrap();
    assert!(human.starts_with(&format!("dispatch {}", env!("CARGO_PKG_VERSION"))), "{human}");
    assert!(human.contains(&format!("data format:      {}", storage::FORMAT_VERSION)), "{human}");
}

/// Human output: headers on every list, a sentence for an empty one, columns that stay
/// put past #10, the tool and hash on the timeline, human times, and the details people
/// look for (queues, labels, checkpoints, handoff ids, what a cancel did).
#[tokio::test]
async fn human_output_has_headers_stable_columns_and_says_when_a_list_is_empty() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let admin = s.admin_token.clone();
    let cli = |args: &[&str]| {
        let out = dispatch_cmd(&[&["--server", &s.url, "--token", &admin], args].concat());
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(cli(&["ticket", "list"]).trim(), "no tickets match");
    assert_eq!(cli(&["handoff", "dlq"]).trim(), "the dead-letter queue is empty");

    let crew = Crew::new(&s).await;
    let id = support::dispatched_ticket(&s, &crew).await;
    for n in 0..6 {
        let (status, body) = s
            .send("POST", &format!("/v1/tickets/{id}/evidence"), &crew.technician, Some(&support::key()),
                Some(serde_json::json!({ "evidence_key": format!("note_{n}"), "kind": "note", "uri": s.blob(&crew.technician, b"x").await })))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let timeline = cli(&["ticket", "timeline", &id]);
    let lines: Vec<&str> = timeline.lines().collect();
    assert!(lines.len() > 10 && lines[0].starts_with("SEQ "), "{timeline}");
    let tool_at = lines[0].find("TOOL").unwrap();
    for row in &lines[1..] {
        assert!(
            row.get(tool_at..).is_some_and(|t| t.starts_with("ticket.")
                || t.starts_with("schedule.")
                || t.starts_with("assignment.")
                || t.starts_with("closeout.")),
            "column moved: {row}"
        );
    }
    let (_, json) = s.send("GET", &format!("/v1/tickets/{id}/timeline"), &admin, None, None).await;
    let last_hash = json["events"].as_array().unwrap().last().unwrap()["hash"].as_str().unwrap()[..12].to_owned();
    assert!(lines.last().unwrap().ends_with(&last_hash), "{timeline}");
    let list = cli(&["ticket", "list"]);
    assert!(list.starts_with("ID ") && !list.contains("ACCOUNT"), "{list}");
    assert!(cli(&["ticket", "list", "-o", "wide"]).lines().next().unwrap().ends_with("SUMMARY"));
    let yaml = cli(&["-o", "yaml", "ticket", "get", &id]);
    assert!(yaml.lines().any(|l| l == format!("id: {id}")), "{yaml}");
    let json: serde_json::Value = serde_json::from_str(&cli(&["ticket", "get", &id, "-o", "json"])).unwrap();
    assert_eq!(json["id"], id.as_str());

    let users = cli(&["user", "create", "olga", "--role", "operator", "--queues", "refunds,billing"]);
    assert!(users.contains("QUEUES") && users.contains("refunds,billing"), "{users}");
    let tokens = cli(&["admin", "tokens"]);
    assert!(tokens.starts_with("JTI ") && tokens.contains(" live ") && tokens.contains("(in "), "{tokens}");
    assert!(!tokens.contains("expires_ms") && !tokens.contains("1795"), "{tokens}");
    assert!(cli(&["node", "show", "node-1"]).contains("labels:"));
    assert!(cli(&["node", "list"]).starts_with("ID "));

    assert!(cli(&["ticket", "templates"]).contains("DOOR_WONT_LATCH"));
    let cockpit = cli(&["ticket", "cockpit"]);
    assert!(cockpit.starts_with("TICKET ") && cockpit.contains(&id), "{cockpit}");
    let packet = cli(&["ticket", "packet", &id]);
    assert!(packet.contains("closeout:  NOT ready: missing evidence") && packet.contains("photo_after"), "{packet}");
    assert!(cli(&["handoff", "insights"]).contains("HITL rate"));
    assert!(cli(&["node", "show", "node-1"]).contains("images:"));
    let login_help = String::from_utf8(dispatch_cmd(&["login", "--help"]).stdout).unwrap();
    assert!(!login_help.contains("--token") && !login_help.contains("--idempotency-key"), "{login_help}");

    let task = cli(&["task", "run", "--detach", "--label", "zone=nowhere", "--", "true"]);
    let task = task.trim();
    assert_eq!(cli(&["task", "cancel", task]).trim(), format!("task {task} cancelled"));
    let result = cli(&["task", "result", task]);
    assert!(result.contains(&format!("task {task} CANCELLED")) && result.contains("it never ran"), "{result}");
}

/// Runs the CLI with its stored logins in `config` (and that as its working directory),
/// no token or server from the environment, and `stdin` as its input.
fn with_config_dir(config: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(args)
        .env("DISPATCH_CONFIG_DIR", config)
        .env_remove("DISPATCH_TOKEN")
        .env_remove("DISPATCH_SERVER")
        .current_dir(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}
