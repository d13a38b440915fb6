//! Command-line interface (clap). Each verb is a thin function over the library.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "maskflow", version, about = "Declarative pipelines for image-classification experiments")]
pub struct Cli {}

pub fn main() -> i32 {
    let _cli = Cli::parse();
    0
}
