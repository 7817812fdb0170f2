//! `carbonshift crds`: the CustomResourceDefinitions generated from the Rust types.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::api::crd;

/// Arguments of `carbonshift crds`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write one file per CRD into this directory (for example `crds/`; created if missing)
    /// instead of printing a multi-document YAML stream. A directory that cannot be created or
    /// written exits with code 2.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints or writes the CRDs.
pub fn run(args: Args) -> ExitCode {
    let rendered = match crd::render_all() {
        Ok(rendered) => rendered,
        Err(e) => return super::failure(e),
    };
    match args.dir {
        None => {
            for (_, yaml) in rendered {
                print!("---\n{yaml}");
            }
        }
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                return super::usage_error(format!(
                    "--dir {}: cannot create the directory: {e}",
                    dir.display()
                ));
            }
            for (file, yaml) in rendered {
                let path = dir.join(file);
                if let Err(e) = std::fs::write(&path, yaml) {
                    return super::usage_error(format!(
                        "--dir: cannot write {}: {e}",
                        path.display()
                    ));
                }
                println!("wrote {}", path.display());
            }
        }
    }
    ExitCode::SUCCESS
}
