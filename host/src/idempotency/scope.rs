//! Which calls count as "the same call": the scope part of a key.

/// Which calls count as "the same call".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Outside a run and without a key: same input, same call (within the
    /// tool's idempotency window).
    #[default]
    Empty,
    /// `--idempotency-key K`: the caller names the operation. The only scope
    /// that can be a `key_conflict`: K reused with another tool or input.
    Explicit(String),
    /// `--no-cache`: a scope no other call shares.
    Fresh,
    /// Inside an agent run: one call of one step.
    Step {
        run_id: String,
        step: u32,
        index: u32,
    },
}

impl Scope {
    /// The scope's text in the key and the `scope` column. Every variant has
    /// its own prefix, so no two scopes render alike; `Fresh` renders to a
    /// new random scope each time.
    pub fn render(&self) -> String {
        match self {
            Scope::Empty => String::new(),
            Scope::Explicit(k) => format!("{}{k}", crate::store::EXPLICIT_SCOPE_PREFIX),
            Scope::Fresh => format!("fresh:{}", crate::store::random_hex()),
            Scope::Step {
                run_id,
                step,
                index,
            } => format!("run:{run_id}:{step}:{index}"),
        }
    }
}

/// The caller's name for an explicit scope (`key:K` -> `K`).
pub(crate) fn explicit_name(rendered: &str) -> &str {
    rendered
        .strip_prefix(crate::store::EXPLICIT_SCOPE_PREFIX)
        .unwrap_or(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_render_apart() {
        assert_eq!(Scope::Empty.render(), "");
        assert_eq!(Scope::Explicit("k".into()).render(), "key:k");
        assert_eq!(explicit_name("key:k"), "k");
        let step = Scope::Step {
            run_id: "r".into(),
            step: 1,
            index: 2,
        };
        assert_eq!(step.render(), "run:r:1:2");
        assert_ne!(Scope::Fresh.render(), Scope::Fresh.render());
    }
}
