fn main() {
    std::process::exit(mirror::cli::run());
}
