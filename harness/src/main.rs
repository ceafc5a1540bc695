fn main() {
    std::process::exit(cnlab::cli::main());
}
