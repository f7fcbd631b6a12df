fn main() {
    std::process::exit(rowferry::cli::main());
}
