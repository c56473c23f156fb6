fn main() -> std::process::ExitCode {
    paramap::cli::main()
}
