//! Choosing the commit to fetch from a remote's advertised refs and `spec.ref`.
//!
//! Deciding from the ref advertisement alone (before fetching) lets the controller skip the
//! fetch when the chosen commit is the one it already has, and fetch only the one ref it needs.
//! Revisions are spelled the way Flux spells them (`main@sha1:<sha>`), so that tooling and
//! habits carry over.

use semver::{Version, VersionReq};

use crate::api::GitReference;

const HEADS_PREFIX: &str = "refs/heads/";
const TAGS_PREFIX: &str = "refs/tags/";
/// Suffix of the advertised entry that gives the commit an annotated tag points at.
const PEELED_SUFFIX: &str = "^{}";

/// One entry of a remote's ref advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// Full ref name: `refs/heads/main`, `refs/tags/v1.0.0`, `refs/tags/v1.0.0^{}` (the
    /// peeled commit of an annotated tag) or `HEAD`.
    pub name: String,
    /// 40-character hex object id.
    pub oid: String,
}

/// What to fetch and check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The ref to fetch, e.g. `refs/heads/main` or `refs/tags/v1.2.0`; `None` when only a
    /// commit was asked for.
    pub refspec: Option<String>,
    /// The commit to check out (lowercase hex), peeled for annotated tags.
    pub oid: String,
    /// Flux-style revision: `main@sha1:<sha>`, `v1.2.0@sha1:<sha>` or `sha1:<sha>`.
    pub revision: String,
}

/// Why no commit could be chosen. Each message names what the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The branch is not advertised by the remote.
    #[error("branch `{0}` was not found on the remote")]
    BranchNotFound(String),
    /// The tag is not advertised by the remote.
    #[error("tag `{0}` was not found on the remote")]
    TagNotFound(String),
    /// No semver tag satisfies the range.
    #[error("no tag matches semver range `{range}` (the remote has {tags_seen} semver tags)")]
    NoSemverMatch {
        /// The range as the user wrote it.
        range: String,
        /// How many of the remote's tags are semver versions at all.
        tags_seen: usize,
    },
    /// The range could not be parsed: the range as written, and why.
    #[error("invalid semver range `{0}`: {1}")]
    InvalidSemverRange(String, String),
    /// No ref was asked for and the remote did not say which branch HEAD points at.
    #[error("the remote advertises no default branch (HEAD); set spec.ref.branch")]
    NoDefaultBranch,
    /// `spec.ref.commit` is not a full SHA-1.
    #[error("`{0}` is not a full 40-character hex commit SHA")]
    InvalidCommit(String),
}

/// Chooses the commit for `reference` among `refs`. `default_branch` is the remote's HEAD
/// symref target (e.g. `refs/heads/main`), used when no ref is given.
///
/// If several fields are set, the most specific wins: commit > semver > tag > branch. A branch
/// given with a commit still names the ref to fetch, since servers need not serve bare commits.
pub fn select(
    refs: &[RemoteRef],
    default_branch: Option<&str>,
    reference: Option<&GitReference>,
) -> Result<Selection, SelectError> {
    let Some(reference) = reference else {
        return select_default_branch(refs, default_branch);
    };
    if let Some(commit) = &reference.commit {
        return select_commit(refs, commit, reference.branch.as_deref());
    }
    if let Some(range) = &reference.semver {
        return select_semver(refs, range);
    }
    if let Some(tag) = &reference.tag {
        return select_tag(refs, tag);
    }
    match &reference.branch {
        Some(branch) => select_branch(refs, branch),
        None => select_default_branch(refs, default_branch),
    }
}

fn select_default_branch(
    refs: &[RemoteRef],
    default_branch: Option<&str>,
) -> Result<Selection, SelectError> {
    let branch = default_branch.ok_or(SelectError::NoDefaultBranch)?;
    select_branch(refs, branch)
}

fn select_branch(refs: &[RemoteRef], branch: &str) -> Result<Selection, SelectError> {
    let (refspec, name, oid) = find_branch(refs, branch)?;
    Ok(named_selection(refspec, name, oid))
}

/// The full ref, short name and head commit of an advertised branch.
fn find_branch<'r, 'b>(
    refs: &'r [RemoteRef],
    branch: &'b str,
) -> Result<(String, &'b str, &'r str), SelectError> {
    if let Some(short) = pull_request_ref(branch) {
        let oid =
            find_oid(refs, branch).ok_or_else(|| SelectError::BranchNotFound(branch.into()))?;
        return Ok((branch.to_owned(), short, oid));
    }
    let name = short_name(branch, HEADS_PREFIX);
    let refspec = format!("{HEADS_PREFIX}{name}");
    let oid = find_oid(refs, &refspec).ok_or_else(|| SelectError::BranchNotFound(name.into()))?;
    Ok((refspec, name, oid))
}

fn select_tag(refs: &[RemoteRef], tag: &str) -> Result<Selection, SelectError> {
    let name = short_name(tag, TAGS_PREFIX);
    let refspec = format!("{TAGS_PREFIX}{name}");
    let oid = tag_commit(refs, name).ok_or_else(|| SelectError::TagNotFound(name.into()))?;
    Ok(named_selection(refspec, name, oid))
}

fn select_commit(
    refs: &[RemoteRef],
    commit: &str,
    branch: Option<&str>,
) -> Result<Selection, SelectError> {
    if !is_full_sha1(commit) {
        return Err(SelectError::InvalidCommit(commit.to_string()));
    }
    let Some(branch) = branch else {
        return Ok(Selection {
            refspec: None,
            oid: commit.to_ascii_lowercase(),
            revision: format!("sha1:{}", commit.to_ascii_lowercase()),
        });
    };
    let (refspec, name, _) = find_branch(refs, branch)?;
    Ok(named_selection(refspec, name, commit))
}

fn select_semver(refs: &[RemoteRef], range: &str) -> Result<Selection, SelectError> {
    let requirement = SemverRange::parse(range)?;
    let versioned_tags: Vec<(Version, &str)> = tag_names(refs)
        .filter_map(|tag| Some((parse_tag_version(tag)?, tag)))
        .collect();
    let (_, best_tag) = versioned_tags
        .iter()
        .filter(|(version, _)| requirement.matches(version))
        .max()
        .ok_or_else(|| SelectError::NoSemverMatch {
            range: range.to_string(),
            tags_seen: versioned_tags.len(),
        })?;
    select_tag(refs, best_tag)
}

/// A selection for a named ref, with a `name@sha1:<sha>` revision.
fn named_selection(refspec: String, name: &str, oid: &str) -> Selection {
    let oid = oid.to_ascii_lowercase();
    Selection {
        refspec: Some(refspec),
        revision: format!("{name}@sha1:{oid}"),
        oid,
    }
}

/// The hosts' pull request refs (GitHub, Gitea and Forgejo `refs/pull/N/head`, GitLab
/// `refs/merge-requests/N/head`, Bitbucket Server `refs/pull-requests/N/from`) are fetched by
/// their full name, which a preview gives as the branch; returns the name without `refs/`.
fn pull_request_ref(name: &str) -> Option<&str> {
    const PULL_PREFIXES: [&str; 3] = ["refs/pull/", "refs/merge-requests/", "refs/pull-requests/"];
    PULL_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
        .then(|| &name["refs/".len()..])
}

/// Lets users write `refs/heads/main` where `main` is expected.
fn short_name<'a>(name: &'a str, prefix: &str) -> &'a str {
    name.strip_prefix(prefix).unwrap_or(name)
}

fn find_oid<'a>(refs: &'a [RemoteRef], name: &str) -> Option<&'a str> {
    refs.iter()
        .find(|remote_ref| remote_ref.name == name)
        .map(|remote_ref| remote_ref.oid.as_str())
}

/// The commit a tag points at: the peeled entry of an annotated tag if advertised, since the
/// tag's own entry is then the tag object rather than a commit.
fn tag_commit<'a>(refs: &'a [RemoteRef], tag: &str) -> Option<&'a str> {
    // Ref names cannot contain `^`, so such a "tag" could only reach a peeled entry.
    if tag.contains('^') {
        return None;
    }
    let full_name = format!("{TAGS_PREFIX}{tag}");
    find_oid(refs, &format!("{full_name}{PEELED_SUFFIX}")).or_else(|| find_oid(refs, &full_name))
}

/// Short names of all advertised tags, each once (peeled entries skipped).
fn tag_names(refs: &[RemoteRef]) -> impl Iterator<Item = &str> {
    refs.iter()
        .filter_map(|remote_ref| remote_ref.name.strip_prefix(TAGS_PREFIX))
        .filter(|tag| !tag.ends_with(PEELED_SUFFIX))
}

/// Tags are versions with or without a leading `v`; anything else is not a release tag.
fn parse_tag_version(tag: &str) -> Option<Version> {
    Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

fn is_full_sha1(candidate: &str) -> bool {
    candidate.len() == 40 && candidate.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// A semver range in the syntax Flux users write (Masterminds/semver): space- or
/// comma-separated comparators, `||` alternatives, hyphen ranges `1.2 - 1.4`, a `v` before
/// versions, and a bare version meaning exactly that version (Cargo would read it as `^`).
struct SemverRange {
    alternatives: Vec<VersionReq>,
}

impl SemverRange {
    fn parse(range: &str) -> Result<SemverRange, SelectError> {
        let invalid = |reason: String| SelectError::InvalidSemverRange(range.to_string(), reason);
        let alternatives = range
            .split("||")
            .map(|alternative| {
                let comparators = cargo_comparators(alternative).map_err(&invalid)?;
                VersionReq::parse(&comparators.join(", ")).map_err(|err| invalid(err.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(SemverRange { alternatives })
    }

    fn matches(&self, version: &Version) -> bool {
        self.alternatives
            .iter()
            .any(|requirement| requirement.matches(version))
    }
}

/// Rewrites one `||`-free alternative into comparators the `semver` crate accepts.
fn cargo_comparators(alternative: &str) -> Result<Vec<String>, String> {
    let mut tokens = alternative
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|token| !token.is_empty());
    let mut comparators: Vec<String> = Vec::new();
    while let Some(token) = tokens.next() {
        if token == "-" {
            let lower = comparators
                .pop()
                .ok_or("hyphen range without a lower bound")?;
            let upper = tokens.next().ok_or("hyphen range without an upper bound")?;
            comparators.push(format!(">={}", lower_bound_version(&lower)));
            comparators.push(format!("<={}", without_v(upper)));
        } else if is_operator(token) {
            let version = tokens
                .next()
                .ok_or(format!("`{token}` is not followed by a version"))?;
            comparators.push(normalize_comparator(&format!("{token}{version}")));
        } else {
            comparators.push(normalize_comparator(token));
        }
    }
    if comparators.is_empty() {
        return Err("the range is empty".to_string());
    }
    Ok(comparators)
}

fn is_operator(token: &str) -> bool {
    token
        .chars()
        .all(|c| matches!(c, '<' | '>' | '=' | '~' | '^'))
}

/// Drops a `v` after the operator and turns a bare version into an exact match.
fn normalize_comparator(comparator: &str) -> String {
    let split = comparator
        .find(|c: char| !matches!(c, '<' | '>' | '=' | '~' | '^'))
        .unwrap_or(comparator.len());
    let (operator, version) = comparator.split_at(split);
    let version = without_v(version);
    let starts_with_digit = version.starts_with(|c: char| c.is_ascii_digit());
    if operator.is_empty() && starts_with_digit {
        format!("={version}")
    } else {
        format!("{operator}{version}")
    }
}

/// The version in a comparator that [`normalize_comparator`] produced (`=1.2` → `1.2`).
fn lower_bound_version(comparator: &str) -> &str {
    comparator.strip_prefix('=').unwrap_or(comparator)
}

fn without_v(version: &str) -> &str {
    match version.strip_prefix('v') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "1111111111111111111111111111111111111111";
    const DEVELOP: &str = "2222222222222222222222222222222222222222";
    const LIGHT_TAG: &str = "3333333333333333333333333333333333333333";
    const TAG_OBJECT: &str = "4444444444444444444444444444444444444444";
    const PEELED: &str = "5555555555555555555555555555555555555555";
    const COMMIT: &str = "abcdefabcdefabcdefabcdefabcdefabcdefabcd";

    fn remote_ref(name: &str, oid: &str) -> RemoteRef {
        RemoteRef {
            name: name.to_string(),
            oid: oid.to_string(),
        }
    }

    fn refs() -> Vec<RemoteRef> {
        vec![
            remote_ref("HEAD", MAIN),
            remote_ref("refs/heads/main", MAIN),
            remote_ref("refs/heads/feature/x", DEVELOP),
            remote_ref("refs/tags/light", LIGHT_TAG),
            remote_ref("refs/tags/annotated", TAG_OBJECT),
            remote_ref("refs/tags/annotated^{}", PEELED),
        ]
    }

    /// Tags named after versions, each pointing at a distinct commit derived from its index.
    fn version_refs(tags: &[&str]) -> Vec<RemoteRef> {
        tags.iter()
            .enumerate()
            .map(|(index, tag)| remote_ref(&format!("refs/tags/{tag}"), &oid_for(index)))
            .collect()
    }

    fn oid_for(index: usize) -> String {
        format!("{index:040x}")
    }

    fn branch(name: &str) -> GitReference {
        GitReference {
            branch: Some(name.to_string()),
            ..GitReference::default()
        }
    }

    fn tag(name: &str) -> GitReference {
        GitReference {
            tag: Some(name.to_string()),
            ..GitReference::default()
        }
    }

    fn semver(range: &str) -> GitReference {
        GitReference {
            semver: Some(range.to_string()),
            ..GitReference::default()
        }
    }

    fn commit(sha: &str) -> GitReference {
        GitReference {
            commit: Some(sha.to_string()),
            ..GitReference::default()
        }
    }

    #[test]
    fn a_pull_request_ref_is_fetched_by_its_full_name_at_the_pushed_commit() {
        let mut advertised = refs();
        advertised.push(remote_ref("refs/pull/7/head", DEVELOP));
        advertised.push(remote_ref("refs/merge-requests/8/head", LIGHT_TAG));
        let pinned = GitReference {
            branch: Some("refs/pull/7/head".to_owned()),
            commit: Some(COMMIT.to_owned()),
            ..GitReference::default()
        };
        let chosen = select(&advertised, None, Some(&pinned)).unwrap();
        assert_eq!(chosen.refspec.as_deref(), Some("refs/pull/7/head"));
        assert_eq!(chosen.oid, COMMIT);
        assert_eq!(chosen.revision, format!("pull/7/head@sha1:{COMMIT}"));
        let merge_request = select(
            &advertised,
            None,
            Some(&branch("refs/merge-requests/8/head")),
        );
        assert_eq!(merge_request.unwrap().oid, LIGHT_TAG);
        assert_eq!(
            select(&advertised, None, Some(&branch("refs/pull/9/head"))),
            Err(SelectError::BranchNotFound("refs/pull/9/head".into()))
        );
    }

    fn selected_tag(tags: &[&str], range: &str) -> Result<String, SelectError> {
        let selection = select(&version_refs(tags), None, Some(&semver(range)))?;
        Ok(selection
            .refspec
            .unwrap()
            .trim_start_matches(TAGS_PREFIX)
            .to_string())
    }

    #[test]
    fn no_reference_follows_the_default_branch() {
        let selection = select(&refs(), Some("refs/heads/main"), None).unwrap();
        assert_eq!(
            selection,
            Selection {
                refspec: Some("refs/heads/main".to_string()),
                oid: MAIN.to_string(),
                revision: format!("main@sha1:{MAIN}"),
            }
        );
    }

    #[test]
    fn an_empty_reference_follows_the_default_branch() {
        let selection = select(&refs(), Some("main"), Some(&GitReference::default())).unwrap();
        assert_eq!(selection.revision, format!("main@sha1:{MAIN}"));
    }

    #[test]
    fn no_reference_without_default_branch_is_an_error() {
        assert_eq!(
            select(&refs(), None, None),
            Err(SelectError::NoDefaultBranch)
        );
        assert_eq!(
            select(&refs(), None, Some(&GitReference::default())),
            Err(SelectError::NoDefaultBranch)
        );
    }

    #[test]
    fn a_default_branch_missing_from_the_refs_is_reported() {
        assert_eq!(
            select(&refs(), Some("refs/heads/trunk"), None),
            Err(SelectError::BranchNotFound("trunk".to_string()))
        );
    }

    #[test]
    fn branch_selects_its_head() {
        let selection = select(&refs(), None, Some(&branch("feature/x"))).unwrap();
        assert_eq!(
            selection,
            Selection {
                refspec: Some("refs/heads/feature/x".to_string()),
                oid: DEVELOP.to_string(),
                revision: format!("feature/x@sha1:{DEVELOP}"),
            }
        );
    }

    #[test]
    fn branch_may_be_written_as_a_full_ref() {
        let selection = select(&refs(), None, Some(&branch("refs/heads/main"))).unwrap();
        assert_eq!(selection.revision, format!("main@sha1:{MAIN}"));
    }

    #[test]
    fn missing_branch_is_reported_by_name() {
        let err = select(&refs(), Some("main"), Some(&branch("release"))).unwrap_err();
        assert_eq!(err, SelectError::BranchNotFound("release".to_string()));
        assert_eq!(
            err.to_string(),
            "branch `release` was not found on the remote"
        );
    }

    #[test]
    fn lightweight_tag_selects_its_commit() {
        let selection = select(&refs(), None, Some(&tag("light"))).unwrap();
        assert_eq!(
            selection,
            Selection {
                refspec: Some("refs/tags/light".to_string()),
                oid: LIGHT_TAG.to_string(),
                revision: format!("light@sha1:{LIGHT_TAG}"),
            }
        );
    }

    #[test]
    fn annotated_tag_selects_the_peeled_commit() {
        let selection = select(&refs(), None, Some(&tag("annotated"))).unwrap();
        assert_eq!(selection.refspec.as_deref(), Some("refs/tags/annotated"));
        assert_eq!(selection.oid, PEELED);
        assert_eq!(selection.revision, format!("annotated@sha1:{PEELED}"));
    }

    #[test]
    fn peeled_entry_wins_wherever_it_is_listed() {
        let refs = vec![
            remote_ref("refs/tags/v1^{}", PEELED),
            remote_ref("refs/tags/v1", TAG_OBJECT),
        ];
        assert_eq!(select(&refs, None, Some(&tag("v1"))).unwrap().oid, PEELED);
    }

    #[test]
    fn missing_tag_is_reported_by_name() {
        let err = select(&refs(), None, Some(&tag("v9"))).unwrap_err();
        assert_eq!(err, SelectError::TagNotFound("v9".to_string()));
        assert_eq!(err.to_string(), "tag `v9` was not found on the remote");
    }

    #[test]
    fn tag_named_like_a_peeled_entry_is_not_found_through_it() {
        assert_eq!(
            select(&refs(), None, Some(&tag("annotated^{}"))),
            Err(SelectError::TagNotFound("annotated^{}".to_string()))
        );
    }

    #[test]
    fn commit_alone_needs_no_ref() {
        let selection = select(&refs(), None, Some(&commit(COMMIT))).unwrap();
        assert_eq!(
            selection,
            Selection {
                refspec: None,
                oid: COMMIT.to_string(),
                revision: format!("sha1:{COMMIT}"),
            }
        );
    }

    #[test]
    fn commit_is_lowercased() {
        let selection = select(&refs(), None, Some(&commit(&COMMIT.to_uppercase()))).unwrap();
        assert_eq!(selection.oid, COMMIT);
        assert_eq!(selection.revision, format!("sha1:{COMMIT}"));
    }

    #[test]
    fn commit_with_branch_fetches_the_branch() {
        let reference = GitReference {
            branch: Some("main".to_string()),
            commit: Some(COMMIT.to_string()),
            ..GitReference::default()
        };
        let selection = select(&refs(), None, Some(&reference)).unwrap();
        assert_eq!(
            selection,
            Selection {
                refspec: Some("refs/heads/main".to_string()),
                oid: COMMIT.to_string(),
                revision: format!("main@sha1:{COMMIT}"),
            }
        );
    }

    #[test]
    fn commit_with_missing_branch_is_reported() {
        let reference = GitReference {
            branch: Some("gone".to_string()),
            commit: Some(COMMIT.to_string()),
            ..GitReference::default()
        };
        assert_eq!(
            select(&refs(), None, Some(&reference)),
            Err(SelectError::BranchNotFound("gone".to_string()))
        );
    }

    #[test]
    fn short_or_non_hex_commits_are_rejected() {
        for sha in [
            "abc123",
            &format!("{COMMIT}0"),
            &COMMIT.replace('a', "g"),
            "",
        ] {
            let err = select(&refs(), None, Some(&commit(sha))).unwrap_err();
            assert_eq!(err, SelectError::InvalidCommit(sha.to_string()));
        }
    }

    #[test]
    fn precedence_is_commit_then_semver_then_tag_then_branch() {
        let mut refs = refs();
        refs.extend(version_refs(&["v1.0.0"]));
        let mut reference = GitReference {
            branch: Some("main".to_string()),
            tag: Some("light".to_string()),
            semver: Some(">=1.0.0".to_string()),
            commit: Some(COMMIT.to_string()),
        };
        let chosen = |reference: &GitReference| select(&refs, None, Some(reference)).unwrap();
        assert_eq!(chosen(&reference).oid, COMMIT);
        reference.commit = None;
        assert_eq!(
            chosen(&reference).revision,
            format!("v1.0.0@sha1:{}", oid_for(0))
        );
        reference.semver = None;
        assert_eq!(chosen(&reference).oid, LIGHT_TAG);
        reference.tag = None;
        assert_eq!(chosen(&reference).oid, MAIN);
    }

    #[test]
    fn semver_picks_the_highest_match() {
        let tags = ["v1.0.0", "v1.2.0", "v1.10.0", "v2.0.0", "v1.9.3"];
        assert_eq!(selected_tag(&tags, ">=1.0.0 <2.0.0").unwrap(), "v1.10.0");
        assert_eq!(selected_tag(&tags, "*").unwrap(), "v2.0.0");
    }

    #[test]
    fn semver_revision_uses_the_tag_name_and_peeled_commit() {
        let refs = vec![
            remote_ref("refs/tags/v1.2.0", TAG_OBJECT),
            remote_ref("refs/tags/v1.2.0^{}", PEELED),
            remote_ref("refs/tags/v1.1.0", LIGHT_TAG),
        ];
        let selection = select(&refs, None, Some(&semver("^1"))).unwrap();
        assert_eq!(
            selection,
            Selection {
                refspec: Some("refs/tags/v1.2.0".to_string()),
                oid: PEELED.to_string(),
                revision: format!("v1.2.0@sha1:{PEELED}"),
            }
        );
    }

    #[test]
    fn semver_accepts_tags_with_and_without_v() {
        assert_eq!(selected_tag(&["1.5.0", "v1.4.0"], "~1").unwrap(), "1.5.0");
        assert_eq!(selected_tag(&["1.3.0", "v1.4.0"], "~1").unwrap(), "v1.4.0");
    }

    #[test]
    fn semver_ignores_tags_that_are_not_versions() {
        let tags = ["latest", "v2", "release-3.0.0", "v1.1.0", "V9.0.0"];
        assert_eq!(selected_tag(&tags, ">=1.0.0").unwrap(), "v1.1.0");
    }

    #[test]
    fn semver_skips_prereleases_unless_the_range_names_one() {
        let tags = ["v1.0.0", "v1.1.0-rc.1"];
        assert_eq!(selected_tag(&tags, ">=1.0.0").unwrap(), "v1.0.0");
        assert_eq!(selected_tag(&tags, ">=1.1.0-rc.0").unwrap(), "v1.1.0-rc.1");
    }

    #[test]
    fn semver_without_match_reports_range_and_tag_count() {
        let err = selected_tag(&["v1.0.0", "v1.1.0", "notes"], ">=2.0.0").unwrap_err();
        assert_eq!(
            err,
            SelectError::NoSemverMatch {
                range: ">=2.0.0".to_string(),
                tags_seen: 2,
            }
        );
        assert_eq!(
            err.to_string(),
            "no tag matches semver range `>=2.0.0` (the remote has 2 semver tags)"
        );
    }

    #[test]
    fn semver_counts_annotated_tags_once() {
        let refs = vec![
            remote_ref("refs/tags/v1.0.0", TAG_OBJECT),
            remote_ref("refs/tags/v1.0.0^{}", PEELED),
        ];
        assert_eq!(
            select(&refs, None, Some(&semver(">=2"))),
            Err(SelectError::NoSemverMatch {
                range: ">=2".to_string(),
                tags_seen: 1,
            })
        );
    }

    #[test]
    fn semver_accepts_flux_style_ranges() {
        let tags = ["v1.0.0", "v1.2.3", "v1.2.9", "v1.3.0", "v2.0.0", "v3.1.0"];
        for (range, expected) in [
            (">=1.0.0 <2.0.0", "v1.3.0"),
            (">= 1.0.0, < 1.3.0", "v1.2.9"),
            (">=v1.0.0 <v1.2.5", "v1.2.3"),
            ("1.2.3", "v1.2.3"),
            ("v1.2.3", "v1.2.3"),
            ("1.2", "v1.2.9"),
            ("1.2.x", "v1.2.9"),
            ("1.x", "v1.3.0"),
            ("~1.2.0", "v1.2.9"),
            ("^1.0.0", "v1.3.0"),
            ("1.0.0 - 1.2.5", "v1.2.3"),
            ("1.0 - 2", "v2.0.0"),
            ("<1.1.0 || >=3.0.0", "v3.1.0"),
            ("=1.0.0 || 1.2.3", "v1.2.3"),
        ] {
            assert_eq!(
                selected_tag(&tags, range).as_deref(),
                Ok(expected),
                "{range}"
            );
        }
    }

    #[test]
    fn semver_rejects_invalid_ranges() {
        for range in [
            "",
            "   ",
            "not-a-range",
            ">=",
            "- 1.0.0",
            "1.0.0 -",
            ">=1.0.0 ||",
            "!=1.0.0",
        ] {
            let err = select(&refs(), None, Some(&semver(range))).unwrap_err();
            assert!(
                matches!(&err, SelectError::InvalidSemverRange(written, _) if written == range),
                "{range}: {err:?}"
            );
            assert!(err.to_string().contains("invalid semver range"), "{err}");
        }
    }

    #[test]
    fn semver_tie_between_spellings_is_deterministic() {
        assert_eq!(
            selected_tag(&["v1.0.0", "1.0.0"], "1.0.0").unwrap(),
            "v1.0.0"
        );
        assert_eq!(
            selected_tag(&["1.0.0", "v1.0.0"], "1.0.0").unwrap(),
            "v1.0.0"
        );
    }

    #[test]
    fn cargo_comparators_rewrites_flux_syntax() {
        assert_eq!(
            cargo_comparators(">= 1.0.0 <v2").unwrap(),
            vec![">=1.0.0", "<2"]
        );
        assert_eq!(cargo_comparators("1.2.3").unwrap(), vec!["=1.2.3"]);
        assert_eq!(
            cargo_comparators("1.2 - v1.4.5").unwrap(),
            vec![">=1.2", "<=1.4.5"]
        );
        assert_eq!(cargo_comparators("*").unwrap(), vec!["*"]);
    }
}
