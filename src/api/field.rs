//! Kubernetes-style field errors: the wording users already know from `kubectl`.
//!
//! `metadata.annotations[apisix-canary.dev/max-weight]: Invalid value: "150": must be
//! between 1 and 100`. Every check collects into an [`ErrorList`] so one answer names
//! every problem, not just the first.

use std::fmt;

/// A path to a field, rendered the way apimachinery's `field.Path` renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn new(root: &str) -> Self {
        Self(root.to_owned())
    }

    /// `parent.child`
    pub fn child(&self, name: &str) -> Self {
        Self(format!("{}.{name}", self.0))
    }

    /// `parent[key]`
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    /// `parent[3]`
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bad value as apimachinery prints it: strings quoted, numbers and lists bare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    Quoted(String),
    Bare(String),
}

impl Shown {
    /// A number, bool or list, printed as written: `Invalid value: 150`.
    pub fn bare(v: impl fmt::Display) -> Self {
        Self::Bare(v.to_string())
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::Quoted(s) => write!(f, "{s:?}"),
            Shown::Bare(s) => f.write_str(s),
        }
    }
}

impl From<&str> for Shown {
    fn from(s: &str) -> Self {
        Self::Quoted(s.to_owned())
    }
}

impl From<&String> for Shown {
    fn from(s: &String) -> Self {
        Self::Quoted(s.clone())
    }
}

impl From<String> for Shown {
    fn from(s: String) -> Self {
        Self::Quoted(s)
    }
}

impl From<&Shown> for Shown {
    fn from(s: &Shown) -> Self {
        s.clone()
    }
}

/// What is wrong with a field, with apimachinery's `ErrorType` wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `Invalid value: "<value>": <detail>`
    Invalid { value: Shown, detail: String },
    /// `Required value: <detail>`
    Required { detail: String },
    /// `Forbidden: <detail>`
    Forbidden { detail: String },
    /// `Unsupported value: "<value>": supported values: "a", "b"`
    NotSupported { value: String, supported: Vec<String> },
    /// `Duplicate value: "<value>"`
    Duplicate { value: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: Path,
    pub kind: Kind,
}

impl FieldError {
    pub fn invalid(path: &Path, value: impl Into<Shown>, detail: impl Into<String>) -> Self {
        let (value, detail) = (value.into(), detail.into());
        Self { path: path.clone(), kind: Kind::Invalid { value, detail } }
    }

    pub fn required(path: &Path, detail: impl Into<String>) -> Self {
        Self { path: path.clone(), kind: Kind::Required { detail: detail.into() } }
    }

    pub fn forbidden(path: &Path, detail: impl Into<String>) -> Self {
        Self { path: path.clone(), kind: Kind::Forbidden { detail: detail.into() } }
    }

    pub fn not_supported(path: &Path, value: impl fmt::Display, supported: &[&str]) -> Self {
        let supported = supported.iter().map(|s| (*s).to_owned()).collect();
        Self { path: path.clone(), kind: Kind::NotSupported { value: value.to_string(), supported } }
    }

    pub fn duplicate(path: &Path, value: impl fmt::Display) -> Self {
        Self { path: path.clone(), kind: Kind::Duplicate { value: value.to_string() } }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        match &self.kind {
            Kind::Invalid { value, detail } => write!(f, "Invalid value: {value}: {detail}"),
            Kind::Required { detail } if detail.is_empty() => f.write_str("Required value"),
            Kind::Required { detail } => write!(f, "Required value: {detail}"),
            Kind::Forbidden { detail } => write!(f, "Forbidden: {detail}"),
            Kind::NotSupported { value, supported } => {
                write!(f, "Unsupported value: {value:?}: supported values: ")?;
                let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                f.write_str(&quoted.join(", "))
            }
            Kind::Duplicate { value } => write!(f, "Duplicate value: {value:?}"),
        }
    }
}

/// All the problems found in one object, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorList(Vec<FieldError>);

impl ErrorList {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    pub fn extend(&mut self, other: ErrorList) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }

    /// `Ok(value)` when nothing was found, the list otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, ErrorList> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl From<FieldError> for ErrorList {
    fn from(error: FieldError) -> Self {
        Self(vec![error])
    }
}

/// At most this many errors are written out; the rest are counted. An object with
/// thousands of bad fields gets an answer of bounded size (kube-apiserver's own
/// aggregate has no limit, but an admission answer travels in every `kubectl` error).
pub const SHOWN_ERRORS: usize = 100;

/// One error alone; several as `[a, b]`, as apimachinery's aggregate prints them, the
/// first [`SHOWN_ERRORS`] of them.
impl fmt::Display for ErrorList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => Ok(()),
            [one] => one.fmt(f),
            many => {
                f.write_str("[")?;
                for (i, e) in many.iter().take(SHOWN_ERRORS).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    e.fmt(f)?;
                }
                if many.len() > SHOWN_ERRORS {
                    write!(f, ", and {} more errors", many.len() - SHOWN_ERRORS)?;
                }
                f.write_str("]")
            }
        }
    }
}

impl std::error::Error for ErrorList {}

/// What a validation found: errors deny, warnings travel with an allowed answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub errors: ErrorList,
    /// Legal but risky values, each with the path it is about.
    pub warnings: Vec<(Path, String)>,
}

impl Findings {
    pub fn push(&mut self, result: Result<impl Sized, FieldError>) {
        if let Err(e) = result {
            self.errors.push(e);
        }
    }

    /// What a parser reported: its errors, or its warnings.
    pub fn of<T>(parsed: Result<(T, Vec<(Path, String)>), ErrorList>) -> Self {
        match parsed {
            Ok((_, warnings)) => Self { errors: ErrorList::new(), warnings },
            Err(errors) => Self { errors, warnings: Vec::new() },
        }
    }

    /// `path: warning`, as `kubectl` prints them after `Warning:`.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.iter().map(|(p, w)| format!("{p}: {w}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_of_errors_are_counted_past_the_first_hundred() {
        let p = Path::new("metadata").child("annotations");
        let errors = ErrorList((0..1000).map(|i| FieldError::required(&p.key(&format!("k{i}")), "x")).collect());
        let shown = errors.to_string();
        assert!(shown.contains("[k99]") && !shown.contains("[k100]"), "{shown}");
        assert!(shown.ends_with(", and 900 more errors]"), "{}", &shown[shown.len() - 60..]);
        assert!(shown.len() < 10_000, "{}", shown.len());
    }

    #[test]
    fn renders_like_apimachinery() {
        let p = Path::new("metadata").child("annotations").key("apisix-canary.dev/max-weight");
        let cases = [
            (
                FieldError::invalid(&p, "150", "must be between 1 and 100"),
                r#"metadata.annotations[apisix-canary.dev/max-weight]: Invalid value: "150": must be between 1 and 100"#,
            ),
            (
                FieldError::invalid(
                    &Path::new("spec").child("maxWeight"),
                    Shown::bare(150),
                    "must be between 1 and 100",
                ),
                "spec.maxWeight: Invalid value: 150: must be between 1 and 100",
            ),
            (FieldError::required(&p, ""), "metadata.annotations[apisix-canary.dev/max-weight]: Required value"),
            (
                FieldError::forbidden(&p, "not allowed"),
                "metadata.annotations[apisix-canary.dev/max-weight]: Forbidden: not allowed",
            ),
            (
                FieldError::not_supported(&p, "yes", &["false", "true"]),
                r#"metadata.annotations[apisix-canary.dev/max-weight]: Unsupported value: "yes": supported values: "false", "true""#,
            ),
            (
                FieldError::duplicate(&Path::new("spec").child("metrics").index(1).child("name"), "a"),
                r#"spec.metrics[1].name: Duplicate value: "a""#,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn aggregates_in_brackets() {
        let p = Path::new("spec");
        let mut list = ErrorList::new();
        assert_eq!(list.to_string(), "");
        list.push(FieldError::required(&p.child("a"), ""));
        assert_eq!(list.to_string(), "spec.a: Required value");
        list.push(FieldError::required(&p.child("b"), ""));
        assert_eq!(list.to_string(), "[spec.a: Required value, spec.b: Required value]");
    }
}
