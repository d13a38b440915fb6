fn main() {
    std::process::exit(maskflow::cli::main());
}
