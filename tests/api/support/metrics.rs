//! Reading `/metrics`: the Prometheus text format parsed into samples, so a
//! test can sum the series it is about.

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone)]
pub struct MetricSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the sample lines (not `#` comments) of a Prometheus text exposition.
pub fn parse_metric_samples(text: &str) -> Vec<MetricSample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_metric_line)
        .collect()
}

fn parse_metric_line(line: &str) -> Option<MetricSample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) if line[..open].find(' ').is_none() => {
            let name = line[..open].to_string();
            let mut labels = Vec::new();
            let mut chars = line[open + 1..].char_indices().peekable();
            let body = &line[open + 1..];
            // key="value" pairs separated by commas; values may hold escapes.
            let end = loop {
                while let Some((_, c)) = chars.peek() {
                    if *c == ',' || *c == ' ' {
                        chars.next();
                    } else {
                        break;
                    }
                }
                let (start, c) = chars.next()?;
                if c == '}' {
                    break start;
                }
                let mut key = String::from(c);
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                if chars.next()?.1 != '"' {
                    return None;
                }
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next()?;
                    match c {
                        '\\' => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        '"' => break,
                        other => value.push(other),
                    }
                }
                labels.push((key.trim().to_string(), value));
            };
            (name, labels, body[end + 1..].trim())
        }
        _ => {
            let mut parts = line.splitn(2, ' ');
            let name = parts.next()?.to_string();
            (name, Vec::new(), parts.next()?.trim())
        }
    };
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(MetricSample {
        name,
        labels,
        value,
    })
}
