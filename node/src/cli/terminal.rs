//! Reading a secret from the terminal without showing it.

/// The password for `dispatch login`: read without echo on a terminal, else one
/// line from stdin (scripts pipe it in).
/// `read_line` reads one line from stdin.
pub fn login_password(username: &str, read_line: impl FnOnce() -> anyhow::Result<String>) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return read_line();
    }
    // Echo goes off before the prompt appears, so nothing typed after it is shown.
    let _echo_off = EchoOff::new()?;
    eprint!("password for {username}: ");
    read_line()
}

/// Terminal echo off on stdin until dropped (then restored, also on errors).
struct EchoOff(rustix::termios::Termios);

impl EchoOff {
    fn new() -> anyhow::Result<Self> {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let original = tcgetattr(std::io::stdin())?;
        let mut quiet = original.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        tcsetattr(std::io::stdin(), OptionalActions::Now, &quiet)?;
        Ok(EchoOff(original))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &self.0);
    }
}
