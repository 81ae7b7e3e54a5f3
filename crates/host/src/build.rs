//! `orderly build` / `orderly up --build`: runs each component's `[component.x.build]` commands,
//! as `spin build` does.

use orderly_manifest::App as Manifest;
use std::path::PathBuf;
use std::process::Command;

/// A build command that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The command could not be started.
    #[error("building `{component}`: cannot run `{command}` in {}: {source}\n    fix: check that the command is installed and the workdir exists", workdir.display())]
    Spawn {
        /// The component.
        component: String,
        /// The command.
        command: String,
        /// Where it ran.
        workdir: PathBuf,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// The command exited unsuccessfully.
    #[error(
        "building `{component}`: `{command}` failed ({status})\n    fix: see the compiler output above"
    )]
    Failed {
        /// The component.
        component: String,
        /// The command.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
    },
}

/// Runs the build commands of every component that has them, in manifest order, stopping at
/// the first failure. Returns how many components were built.
pub fn build_all(manifest: &Manifest) -> Result<usize, BuildError> {
    let mut built = 0;
    for component in manifest.components.values() {
        let Some(build) = &component.build else {
            tracing::info!(component = %component.id, "no build command; using {}", component.source.display());
            continue;
        };
        for command in &build.commands {
            tracing::info!(component = %component.id, %command, "building");
            let status = Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&build.workdir)
                .status()
                .map_err(|source| BuildError::Spawn {
                    component: component.id.to_string(),
                    command: command.clone(),
                    workdir: build.workdir.clone(),
                    source,
                })?;
            if !status.success() {
                return Err(BuildError::Failed {
                    component: component.id.to_string(),
                    command: command.clone(),
                    status,
                });
            }
        }
        built += 1;
    }
    Ok(built)
}
