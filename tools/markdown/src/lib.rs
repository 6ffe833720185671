//! `markdown`: renders CommonMark (with tables, strikethrough, task lists and
//! footnotes) to HTML with `pulldown-cmark`.
//!
//! `{"markdown": "# hi"}` -> `{"html": "<h1>hi</h1>\n"}`. Raw HTML in the
//! input passes through as CommonMark says; sanitise before showing it to a
//! browser.

use pulldown_cmark::{Options, Parser, html};
use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// CommonMark text.
    pub markdown: String,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct Output {
    /// The rendered HTML.
    pub html: String,
}

pub fn render(input: Input, _ctx: &Context) -> Result<Output, ToolError> {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut html = String::with_capacity(input.markdown.len() * 3 / 2);
    html::push_html(&mut html, Parser::new_ext(&input.markdown, options));
    Ok(Output { html })
}

toolhost_sdk::export_tool! {
    name: "markdown",
    description: "Renders CommonMark (with tables and strikethrough) to HTML.",
    effect: Pure,
    run: render,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(md: &str) -> String {
        render(
            Input {
                markdown: md.into(),
            },
            &Context::for_tests(),
        )
        .unwrap()
        .html
    }

    #[test]
    fn heading() {
        assert_eq!(html("# hi"), "<h1>hi</h1>\n");
    }

    #[test]
    fn emphasis_and_tables() {
        assert_eq!(html("*a* ~~b~~"), "<p><em>a</em> <del>b</del></p>\n");
        assert!(html("|a|b|\n|-|-|\n|1|2|").contains("<table>"));
    }

    #[test]
    fn empty_input_is_empty_output() {
        assert_eq!(html(""), "");
    }
}
