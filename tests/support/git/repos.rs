//! Bare repositories on disk and helpers that write history into them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;

use super::{git, git_output};

/// Identity recorded on every test commit and annotated tag.
const AUTHOR: [&str; 4] = [
    "-c",
    "user.name=driftless tests",
    "-c",
    "user.email=tests@driftless.invalid",
];

/// A temporary directory of bare repositories; serve it with
/// [`HttpGitServer`](super::HttpGitServer) (its project root) and
/// [`SshGitServer`](super::SshGitServer) (absolute paths).
pub struct GitRepos {
    root: Arc<TempDir>,
}

impl GitRepos {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("driftless-git-repos-")
            .tempdir()
            .expect("create temp dir for git repos");
        Self {
            root: Arc::new(root),
        }
    }

    /// The directory holding every `<name>.git`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Creates the empty bare repository `<root>/<name>.git` whose HEAD is `main`.
    pub fn create(&self, name: &str) -> TestRepo {
        let path = self.root().join(format!("{name}.git"));
        let path_arg = path.to_str().expect("temp paths are UTF-8");
        git(
            self.root(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                path_arg,
            ],
            &[],
        );
        // Let clients ask for exactly what a controller asks for: partial clones and
        // fetching a pinned commit by SHA.
        for setting in [
            "uploadpack.allowFilter",
            "uploadpack.allowReachableSHA1InWant",
        ] {
            git(&path, &["config", setting, "true"], &[]);
        }
        TestRepo {
            name: name.to_owned(),
            path,
            _root: Arc::clone(&self.root),
        }
    }
}

impl Default for GitRepos {
    fn default() -> Self {
        Self::new()
    }
}

/// One bare repository inside a [`GitRepos`]; keeps the directory alive while it exists.
pub struct TestRepo {
    name: String,
    path: PathBuf,
    _root: Arc<TempDir>,
}

impl TestRepo {
    /// The name given to [`GitRepos::create`], without `.git`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Absolute path of the bare repository (`.../<name>.git`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits on `main`; see [`TestRepo::commit_on`].
    pub fn commit(&self, message: &str, files: &[(&str, &str)]) -> String {
        self.commit_on("main", message, files)
    }

    /// Commits on `main` the `files` plus symlinks `(path, target)`, all under `deploy/`.
    pub fn commit_with_links(&self, files: &[(&str, &str)], links: &[(&str, &str)]) -> String {
        let bare = git2::Repository::open_bare(self.path()).unwrap();
        let mut deploy = bare.treebuilder(None).unwrap();
        for (name, contents) in files {
            let blob = bare.blob(contents.as_bytes()).unwrap();
            deploy.insert(name, blob, 0o100644).unwrap();
        }
        for (name, target) in links {
            let blob = bare.blob(target.as_bytes()).unwrap();
            deploy.insert(name, blob, 0o120000).unwrap();
        }
        let deploy = deploy.write().unwrap();
        let mut root = bare.treebuilder(None).unwrap();
        root.insert("deploy", deploy, 0o040000).unwrap();
        let tree = bare.find_tree(root.write().unwrap()).unwrap();
        let parent = bare
            .find_commit(git2::Oid::from_str(&self.rev_parse("refs/heads/main")).unwrap())
            .unwrap();
        let who = git2::Signature::now("test", "test@example.com").unwrap();
        bare.commit(
            Some("refs/heads/main"),
            &who,
            &who,
            "links",
            &tree,
            &[&parent],
        )
        .unwrap()
        .to_string()
    }

    /// Adds a commit to `branch` whose tree is exactly `files` (`(path, contents)`, paths
    /// may contain `/`), and returns its 40-hex SHA. A missing branch starts with a root
    /// commit; to fork, call [`TestRepo::branch`] first.
    ///
    /// The commit is written straight into the bare repository with plumbing rather than
    /// pushed from a working clone: any branch can get a commit without keeping a clone
    /// checked out on it, and the tree is exactly what the test listed.
    pub fn commit_on(&self, branch: &str, message: &str, files: &[(&str, &str)]) -> String {
        let scratch = tempfile::tempdir().expect("create scratch dir for a commit");
        let tree = self.write_tree(scratch.path(), files);
        let reference = format!("refs/heads/{branch}");
        let parent = self.try_rev_parse(&reference);
        let mut args = AUTHOR.to_vec();
        args.extend(["commit-tree", &tree, "-m", message]);
        if let Some(parent) = &parent {
            args.extend(["-p", parent]);
        }
        let commit = git(&self.path, &args, &[]);
        // Passing the old value makes the update fail instead of losing a concurrent commit.
        let old = parent.unwrap_or_default();
        git(&self.path, &["update-ref", &reference, &commit, &old], &[]);
        commit
    }

    /// Points `branch` at `target` (any revision), creating or moving it.
    pub fn branch(&self, branch: &str, target: &str) {
        let commit = self.rev_parse(&format!("{target}^{{commit}}"));
        git(
            &self.path,
            &["update-ref", &format!("refs/heads/{branch}"), &commit],
            &[],
        );
    }

    /// Creates the lightweight tag `tag` on `target`.
    pub fn tag(&self, tag: &str, target: &str) {
        git(&self.path, &["tag", tag, target], &[]);
    }

    /// Creates the annotated tag `tag` on `target` and returns the tag object's SHA.
    pub fn annotated_tag(&self, tag: &str, target: &str, message: &str) -> String {
        let mut args = AUTHOR.to_vec();
        args.extend(["tag", "--annotate", "--message", message, tag, target]);
        git(&self.path, &args, &[]);
        self.rev_parse(&format!("refs/tags/{tag}"))
    }

    /// Resolves `revision` to a 40-hex SHA; panics if it does not exist.
    pub fn rev_parse(&self, revision: &str) -> String {
        self.try_rev_parse(revision)
            .unwrap_or_else(|| panic!("{revision} does not exist in {}", self.path.display()))
    }

    fn try_rev_parse(&self, revision: &str) -> Option<String> {
        let output = git_output(
            &self.path,
            &["rev-parse", "--verify", "--quiet", revision],
            &[],
        );
        let sha = String::from_utf8(output.stdout).ok()?.trim().to_owned();
        (output.status.success() && !sha.is_empty()).then_some(sha)
    }

    /// Stores `files` as a tree object using a throwaway work tree and index in `scratch`.
    fn write_tree(&self, scratch: &Path, files: &[(&str, &str)]) -> String {
        let work_tree = scratch.join("tree");
        for (path, contents) in files {
            let file = work_tree.join(path);
            fs::create_dir_all(file.parent().expect("file path has a parent"))
                .expect("create directories for a test file");
            fs::write(&file, contents).expect("write a test file");
        }
        fs::create_dir_all(&work_tree).expect("create scratch work tree");
        let index = scratch.join("index");
        let index_env = [("GIT_INDEX_FILE", index.as_path())];
        let git_dir_arg = format!("--git-dir={}", self.path.display());
        let add = [&git_dir_arg, "--work-tree=.", "add", "--all", "."];
        git(&work_tree, &add, &index_env);
        git(&work_tree, &[&git_dir_arg, "write-tree"], &index_env)
    }
}
