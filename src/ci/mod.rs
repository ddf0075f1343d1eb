//! The CI system and the code host around a run: where an attempt comes from ([`provenance`]),
//! the pull request's plan comment on GitHub ([`github`]) or Azure DevOps ([`azure_devops`]), and
//! the few questions asked of `git` ([`git`]).

pub(crate) mod azure_devops;
pub(crate) mod git;
pub(crate) mod github;
pub(crate) mod provenance;
