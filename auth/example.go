package auth

// ExamplePolicy is a commented policy file that ParsePolicy accepts: what
// `berth auth example-policy` prints and the README shows.
const ExamplePolicy = `# Berth's policy file: who may do what, where. Berth reads it again when
# it changes; an edit that does not parse is logged and the previous
# policy stays in force.
#
# Actions: pull, push, delete, admin. Admin on one repository is its tag
# administration; admin on "*" is the registry-wide admin API (garbage
# collection, webhooks, policies).
#
# A user's rights on a repository are the union of every rule that names
# the user (directly, through a group, or with "*", any authenticated
# user) and whose repositories match it. Where no rule does, the default
# applies. In repository globs, * matches any run of characters, / too.

groups:
  admins: [alice]
  ci: [robot]

# Anyone may pull these, without credentials.
anonymous: ["public/*"]

# What a user may do on a repository where no rule names them. (The last
# rule below names every user everywhere; without it, this would apply.)
default: [pull]

# Moving a numbered tag (a version, such as 42) to another manifest
# rewrites history, so it needs delete here rather than push.
moveNumberedTag: delete

rules:
  - groups: [admins]
    repositories: ["*"]
    actions: [pull, push, delete, admin]
  - groups: [ci]
    repositories: ["apps/*"]
    actions: [pull, push]
  - users: ["*"]
    repositories: ["*"]
    actions: [pull]
`
