//! Which GitRepository objects a push concerns.
//!
//! Targets are indexed by the normalized repository URL, so a delivery costs one hash lookup
//! per URL form in the payload plus a look at the targets of that one repository, however many
//! objects exist. (Argo CD compares every Application instead and, at ~1,500 of them, ran past
//! GitLab's 10 s timeout.) The controller keeps the index current from its watch.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube::ResourceExt as _;

use crate::api::{GitReference, GitRepository};
use crate::source::url::{RepositoryUrl, UrlError};

use super::payload::Push;

/// One GitRepository as matching sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// [`RepositoryUrl::cache_key`] of `spec.url`.
    pub url_key: String,
    /// `spec.ref`; `None` follows the remote's default branch.
    pub reference: Option<GitReference>,
}

impl Target {
    /// A target for `spec.url`, normalizing the URL the same way payload URLs are.
    pub fn new(
        namespace: &str,
        name: &str,
        url: &str,
        reference: Option<GitReference>,
    ) -> Result<Target, UrlError> {
        Ok(Target {
            namespace: namespace.to_string(),
            name: name.to_string(),
            url_key: RepositoryUrl::parse(url)?.cache_key(),
            reference,
        })
    }

    /// The target of a GitRepository as the controller's watch delivers it.
    pub fn from_git_repository(repository: &GitRepository) -> Result<Target, UrlError> {
        Target::new(
            &repository.namespace().unwrap_or_default(),
            &repository.name_any(),
            &repository.spec.url,
            repository.spec.reference.clone(),
        )
    }

    /// The commit to pass on with a trigger. A semver target resolves to the highest matching
    /// tag, which need not be the one just pushed, so it gets no commit hint.
    pub fn commit_hint<'a>(&self, push: &'a Push) -> Option<&'a str> {
        let semver = self
            .reference
            .as_ref()
            .is_some_and(|reference| reference.semver.is_some());
        if semver { None } else { push.commit.as_deref() }
    }

    fn object_name(&self) -> ObjectName {
        (self.namespace.clone(), self.name.clone())
    }
}

/// `(namespace, name)` of a GitRepository.
type ObjectName = (String, String);

/// Targets by repository URL key, with a reverse map so that updates by namespace/name need no
/// scan either.
#[derive(Debug, Default, Clone)]
pub struct TargetIndex {
    by_url: HashMap<String, HashMap<ObjectName, Target>>,
    url_of: HashMap<ObjectName, String>,
}

impl TargetIndex {
    /// An empty index.
    pub fn new() -> TargetIndex {
        TargetIndex::default()
    }

    /// Adds a target or replaces the one with the same namespace/name (whose URL may have
    /// changed). Returns the replaced target.
    pub fn insert(&mut self, target: Target) -> Option<Target> {
        let key = target.object_name();
        let previous = self.remove(&key.0, &key.1);
        self.url_of.insert(key.clone(), target.url_key.clone());
        self.by_url
            .entry(target.url_key.clone())
            .or_default()
            .insert(key, target);
        previous
    }

    /// Removes the target of a deleted object (or one whose URL became invalid).
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<Target> {
        let key = (namespace.to_string(), name.to_string());
        let url_key = self.url_of.remove(&key)?;
        let targets = self.by_url.get_mut(&url_key)?;
        let removed = targets.remove(&key);
        if targets.is_empty() {
            self.by_url.remove(&url_key);
        }
        removed
    }

    /// Replaces the whole content, e.g. when the controller's watch relists.
    pub fn replace_all(&mut self, targets: impl IntoIterator<Item = Target>) {
        *self = TargetIndex::new();
        for target in targets {
            self.insert(target);
        }
    }

    /// The target of an object, if indexed.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Target> {
        let key = (namespace.to_string(), name.to_string());
        self.by_url.get(self.url_of.get(&key)?)?.get(&key)
    }

    /// How many objects are indexed.
    pub fn len(&self) -> usize {
        self.url_of.len()
    }

    /// Whether no object is indexed.
    pub fn is_empty(&self) -> bool {
        self.url_of.is_empty()
    }

    /// `(namespace, name)` of every target the push should reconcile, sorted and without
    /// duplicates.
    pub fn matches(&self, push: &Push) -> Vec<(String, String)> {
        self.matching_targets(push)
            .into_iter()
            .map(Target::object_name)
            .collect()
    }

    /// `(namespace, name)` of every target of the repository any of `urls` names, whatever
    /// its ref, sorted and without duplicates.
    pub fn repository_objects(&self, urls: &[String]) -> Vec<(String, String)> {
        let keys: BTreeSet<String> = urls
            .iter()
            .filter_map(|url| RepositoryUrl::parse(url).ok())
            .map(|url| url.cache_key())
            .collect();
        let objects: BTreeSet<ObjectName> = keys
            .iter()
            .filter_map(|key| self.by_url.get(key))
            .flat_map(|targets| targets.keys().cloned())
            .collect();
        objects.into_iter().collect()
    }

    /// The targets the push should reconcile, sorted by namespace/name, without duplicates.
    /// Looks only at the targets of the payload's repository.
    pub fn matching_targets(&self, push: &Push) -> Vec<&Target> {
        let mut matched = BTreeMap::new();
        for url_key in push_url_keys(push) {
            let Some(targets) = self.by_url.get(&url_key) else {
                continue;
            };
            let hits = targets
                .iter()
                .filter(|(_, target)| reference_matches(target.reference.as_ref(), push));
            matched.extend(hits);
        }
        matched.into_values().collect()
    }
}

/// The distinct URL keys of a payload; unparsable URLs are skipped, not errors, since the other
/// forms usually suffice.
fn push_url_keys(push: &Push) -> BTreeSet<String> {
    push.repository_urls
        .iter()
        .filter_map(|url| RepositoryUrl::parse(url).ok())
        .map(|url| url.cache_key())
        .collect()
}

/// What kind of ref a push updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PushedRef<'a> {
    Branch(&'a str),
    Tag(&'a str),
    /// The sender did not say which ref.
    Unknown,
    /// Pull/merge request refs and the like, which no spec can follow.
    Other,
}

fn classify(git_ref: Option<&str>) -> PushedRef<'_> {
    let Some(git_ref) = git_ref else {
        return PushedRef::Unknown;
    };
    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        PushedRef::Branch(branch)
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        PushedRef::Tag(tag)
    } else {
        PushedRef::Other
    }
}

/// Whether a push can change what a spec with this `ref` resolves to.
///
/// - Branch push: the same branch (with or without a pinned commit, which the controller checks
///   is on the branch), or no ref at all when the push is to the default branch. Payloads that
///   do not name the default branch trigger ref-less targets on every branch push, erring
///   towards an extra reconcile over a missed one.
/// - Tag push: the same tag, or any semver range (the controller re-resolves the range; the
///   range syntax is checked there, not duplicated here).
/// - Unknown ref: everything but commit-only pins, which no push can move.
pub fn reference_matches(reference: Option<&GitReference>, push: &Push) -> bool {
    let reference = reference.cloned().unwrap_or_default();
    match classify(push.git_ref.as_deref()) {
        PushedRef::Branch(branch) => branch_matches(&reference, branch, push),
        PushedRef::Tag(tag) => tag_matches(&reference, tag),
        PushedRef::Unknown => !is_commit_pin(&reference),
        PushedRef::Other => false,
    }
}

fn branch_matches(reference: &GitReference, pushed: &str, push: &Push) -> bool {
    if let Some(branch) = &reference.branch {
        return strip(branch, "refs/heads/") == pushed;
    }
    if follows_default_branch(reference) {
        return push
            .default_branch
            .as_deref()
            .is_none_or(|default| strip(default, "refs/heads/") == pushed);
    }
    false
}

fn tag_matches(reference: &GitReference, pushed: &str) -> bool {
    if reference.semver.is_some() {
        return true;
    }
    reference
        .tag
        .as_deref()
        .is_some_and(|tag| strip(tag, "refs/tags/") == pushed)
}

fn follows_default_branch(reference: &GitReference) -> bool {
    reference.branch.is_none()
        && reference.tag.is_none()
        && reference.semver.is_none()
        && reference.commit.is_none()
}

fn is_commit_pin(reference: &GitReference) -> bool {
    reference.commit.is_some() && reference.branch.is_none()
}

fn strip<'a>(name: &'a str, prefix: &str) -> &'a str {
    name.strip_prefix(prefix).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://github.com/org/repo.git";

    fn branch(name: &str) -> Option<GitReference> {
        Some(GitReference {
            branch: Some(name.to_string()),
            ..GitReference::default()
        })
    }

    fn tag(name: &str) -> Option<GitReference> {
        Some(GitReference {
            tag: Some(name.to_string()),
            ..GitReference::default()
        })
    }

    fn semver(range: &str) -> Option<GitReference> {
        Some(GitReference {
            semver: Some(range.to_string()),
            ..GitReference::default()
        })
    }

    fn commit(branch: Option<&str>) -> Option<GitReference> {
        Some(GitReference {
            branch: branch.map(str::to_string),
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_string()),
            ..GitReference::default()
        })
    }

    fn target(name: &str, url: &str, reference: Option<GitReference>) -> Target {
        Target::new("ns", name, url, reference).unwrap()
    }

    fn push(git_ref: Option<&str>, default_branch: Option<&str>) -> Push {
        Push {
            repository_urls: vec![
                "https://github.com/org/repo.git".to_string(),
                "git@github.com:org/repo.git".to_string(),
                "https://github.com/org/repo".to_string(),
            ],
            git_ref: git_ref.map(str::to_string),
            default_branch: default_branch.map(str::to_string),
            ..Push::default()
        }
    }

    fn names(matches: Vec<(String, String)>) -> Vec<String> {
        matches.into_iter().map(|(_, name)| name).collect()
    }

    fn sample_index() -> TargetIndex {
        let mut index = TargetIndex::new();
        index.insert(target("main", URL, branch("main")));
        index.insert(target("dev", URL, branch("refs/heads/dev")));
        index.insert(target("default", "git@github.com:org/repo", None));
        index.insert(target("empty-ref", URL, Some(GitReference::default())));
        index.insert(target("tag", URL, tag("v1.0.0")));
        index.insert(target("semver", URL, semver(">=1.0.0")));
        index.insert(target("pinned", URL, commit(None)));
        index.insert(target("pinned-main", URL, commit(Some("main"))));
        index.insert(target("other-repo", "https://github.com/org/other", None));
        index
    }

    #[test]
    fn branch_push_to_default_branch() {
        let matched = sample_index().matches(&push(Some("refs/heads/main"), Some("main")));
        assert_eq!(
            names(matched),
            ["default", "empty-ref", "main", "pinned-main"]
        );
    }

    #[test]
    fn branch_push_to_other_branch_skips_default_followers_when_default_is_known() {
        let matched = sample_index().matches(&push(Some("refs/heads/dev"), Some("main")));
        assert_eq!(names(matched), ["dev"]);
    }

    #[test]
    fn branch_push_without_known_default_triggers_default_followers() {
        let matched = sample_index().matches(&push(Some("refs/heads/dev"), None));
        assert_eq!(names(matched), ["default", "dev", "empty-ref"]);
    }

    #[test]
    fn tag_push_triggers_equal_tag_and_semver() {
        let index = sample_index();
        assert_eq!(
            names(index.matches(&push(Some("refs/tags/v1.0.0"), Some("main")))),
            ["semver", "tag"]
        );
        assert_eq!(
            names(index.matches(&push(Some("refs/tags/v2.0.0"), Some("main")))),
            ["semver"]
        );
    }

    #[test]
    fn unknown_ref_triggers_all_but_commit_pins_and_other_refs_nothing() {
        let index = sample_index();
        assert_eq!(
            names(index.matches(&push(None, None))),
            [
                "default",
                "dev",
                "empty-ref",
                "main",
                "pinned-main",
                "semver",
                "tag"
            ]
        );
        assert!(
            index
                .matches(&push(Some("refs/pull/1/head"), None))
                .is_empty()
        );
    }

    #[test]
    fn url_spellings_match_and_other_repositories_do_not() {
        let mut index = TargetIndex::new();
        index.insert(target("a", "ssh://git@GitHub.com/org/repo.git", None));
        let mut only_html = push(Some("refs/heads/main"), None);
        only_html.repository_urls = vec!["https://github.com/org/repo".to_string()];
        assert_eq!(names(index.matches(&only_html)), ["a"]);
        only_html.repository_urls = vec!["https://github.com/org/repository".to_string()];
        assert!(index.matches(&only_html).is_empty());
        only_html.repository_urls = vec!["not a url at all".to_string()];
        assert!(index.matches(&only_html).is_empty());
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let mut index = TargetIndex::new();
        index.insert(target("a", URL, branch("main")));
        let previous = index.insert(target("a", "https://github.com/org/moved", branch("main")));
        assert_eq!(
            previous.map(|t| t.url_key),
            Some("github.com/org/repo".to_string())
        );
        assert_eq!(index.len(), 1);
        assert!(
            index
                .matches(&push(Some("refs/heads/main"), None))
                .is_empty()
        );
        assert!(index.get("ns", "a").is_some());
        assert!(index.remove("ns", "a").is_some());
        assert!(index.is_empty());
        assert!(index.remove("ns", "a").is_none());
    }

    #[test]
    fn replace_all_drops_previous_content() {
        let mut index = sample_index();
        index.replace_all([target("only", URL, branch("main"))]);
        assert_eq!(index.len(), 1);
        assert_eq!(
            names(index.matches(&push(Some("refs/heads/main"), None))),
            ["only"]
        );
    }

    #[test]
    fn semver_targets_get_no_commit_hint() {
        let mut pushed = push(Some("refs/tags/v1.0.0"), None);
        pushed.commit = Some("abc".to_string());
        assert_eq!(
            target("t", URL, tag("v1.0.0")).commit_hint(&pushed),
            Some("abc")
        );
        assert_eq!(target("s", URL, semver("^1")).commit_hint(&pushed), None);
    }

    #[test]
    fn target_from_git_repository() {
        let mut repository = GitRepository::new(
            "site",
            crate::api::GitRepositorySpec {
                url: "git@github.com:org/repo.git".to_string(),
                reference: branch("main"),
                ..Default::default()
            },
        );
        repository.metadata.namespace = Some("apps".to_string());
        let target = Target::from_git_repository(&repository).unwrap();
        assert_eq!(
            (target.namespace.as_str(), target.name.as_str()),
            ("apps", "site")
        );
        assert_eq!(target.url_key, "github.com/org/repo");
        assert_eq!(target.reference, branch("main"));
    }

    #[test]
    fn thousand_targets_only_matching_repository_and_branch() {
        let mut index = TargetIndex::new();
        for n in 0..1_000 {
            let url = format!("https://git.example.com/team/repo-{}.git", n % 100);
            let reference = branch(if n % 2 == 0 { "main" } else { "dev" });
            index.insert(
                Target::new(&format!("ns-{n}"), &format!("app-{n}"), &url, reference).unwrap(),
            );
        }
        assert_eq!(index.len(), 1_000);
        let push = Push {
            repository_urls: vec!["git@git.example.com:team/repo-42".to_string()],
            git_ref: Some("refs/heads/main".to_string()),
            ..Push::default()
        };
        let matched = index.matches(&push);
        let expected: Vec<(String, String)> = (0..1_000)
            .filter(|n| n % 100 == 42)
            .map(|n| (format!("ns-{n}"), format!("app-{n}")))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(matched.len(), 10);
        assert_eq!(matched, expected);
    }
}
