fn main() -> std::process::ExitCode {
    gwctl::main(std::env::args_os())
}
