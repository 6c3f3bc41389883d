fn main() -> std::process::ExitCode {
    dispatch_node::cli::main()
}
