/// Expand a short image name the way Docker and containerd do: `hello` ->
/// `docker.io/library/hello:latest`, `me/app:v1` -> `docker.io/me/app:v1`; a name whose first part
/// holds a `.` or `:` or is `localhost` is taken as a registry and kept.
pub fn normalize_reference(name: &str) -> String {
    let (repo, tag) = split_tag(name);
    let repo = match repo.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            repo.to_string()
        }
        Some(_) => format!("docker.io/{repo}"),
        None => format!("docker.io/library/{repo}"),
    };
    match tag {
        Some(t) => format!("{repo}{t}"),
        None => format!("{repo}:latest"),
    }
}

/// Split off `:tag` or `@digest` (returned with its separator).
fn split_tag(name: &str) -> (&str, Option<&str>) {
    if let Some(at) = name.find('@') {
        return (&name[..at], Some(&name[at..]));
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(colon) => {
            let i = last_slash + colon;
            (&name[..i], Some(&name[i..]))
        }
        None => (name, None),
    }
}

/// The tag of a normalized reference, for `org.opencontainers.image.ref.name`.
pub(crate) fn tag_of(reference: &str) -> Option<&str> {
    match split_tag(reference).1 {
        Some(t) if t.starts_with(':') => Some(&t[1..]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(
            normalize_reference("hello"),
            "docker.io/library/hello:latest"
        );
        assert_eq!(
            normalize_reference("hello:v1"),
            "docker.io/library/hello:v1"
        );
        assert_eq!(normalize_reference("me/app"), "docker.io/me/app:latest");
        assert_eq!(normalize_reference("ghcr.io/x/y:2"), "ghcr.io/x/y:2");
        assert_eq!(
            normalize_reference("localhost:5000/y"),
            "localhost:5000/y:latest"
        );
        assert_eq!(normalize_reference("localhost/y:z"), "localhost/y:z");
        assert_eq!(tag_of("docker.io/library/hello:v1"), Some("v1"));
    }
}
