//! `edgebert`: the device CLI (tokenize, classify, bench, inspect). Errors are one line on
//! stderr with exit code 2; see `edgebert --help`.
#![deny(clippy::unwrap_used)]
mod cli;

#[global_allocator]
static GLOBAL: cli::alloc_counter::CountingAlloc = cli::alloc_counter::CountingAlloc;

fn main() {
    std::process::exit(cli::main());
}
