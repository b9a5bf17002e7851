//! The pinned upstream `kustomize` binary: finding it, checking its version, and the one command
//! line driftless runs.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use super::{
    RenderError, binary,
    kustomization::display_dir,
    sandbox::{ProcessLimits, WorkDir},
};

pub use binary::find_on_path;

pub const RENDERER: &str = "kustomize";

/// The version driftless is tested against and ships in its image; another v5 runs with a
/// warning, anything else is refused.
pub const PINNED_VERSION: &str = "v5.8.2";

/// A usable kustomize binary.
#[derive(Clone, Debug)]
pub struct Kustomize {
    pub binary: PathBuf,
    pub version: String,
}

impl Kustomize {
    /// Finds the binary (`binary`, or `kustomize` on `PATH`) and checks that it is kustomize v5.
    pub async fn locate(
        binary: Option<&Path>,
        work_parent: Option<&Path>,
    ) -> Result<Self, RenderError> {
        let expected = binary::Expected {
            renderer: RENDERER,
            flag: "--kustomize-binary",
            version_args: &["version"],
            major: "v5",
            pinned: PINNED_VERSION,
        };
        let (binary, version) = binary::locate(&expected, binary, work_parent).await?;
        Ok(Self { binary, version })
    }

    /// `kustomize build --load-restrictor=LoadRestrictionsRootOnly -- <unit>`, and nothing
    /// that would enable plugins, exec functions, Helm or the network. The unit comes after
    /// `--`, which ends kustomize's flags: a directory of the repository named `--enable-helm`
    /// is built as that directory, never read as the flag.
    pub fn build_args(unit: &str) -> Vec<OsString> {
        let unit = if unit.is_empty() { "." } else { unit };
        [
            "build",
            "--load-restrictor=LoadRestrictionsRootOnly",
            super::helm::END_OF_FLAGS,
            unit,
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }

    /// Runs the build of `unit` in `work` (whose `repo/` holds the materialized inputs).
    pub async fn build(
        &self,
        unit: &str,
        work: &WorkDir,
        limits: &ProcessLimits,
    ) -> Result<Vec<u8>, RenderError> {
        let args = Self::build_args(unit);
        binary::render(
            RENDERER,
            &display_dir(unit),
            &self.binary,
            &args,
            &[],
            work,
            limits,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_never_enables_plugins_helm_or_the_network() {
        let args = Kustomize::build_args("apps/prod");
        assert_eq!(
            args,
            [
                "build",
                "--load-restrictor=LoadRestrictionsRootOnly",
                "--",
                "apps/prod",
            ]
            .map(OsString::from)
        );
        let root = Kustomize::build_args("");
        assert_eq!(root.last(), Some(&OsString::from(".")));
        let flag_named = Kustomize::build_args("--enable-helm");
        assert_eq!(flag_named[2..], ["--", "--enable-helm"].map(OsString::from));
    }
}
