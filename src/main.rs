fn main() {
    maskflow::alloc::keep_large_blocks();
    std::process::exit(maskflow::cli::main());
}
