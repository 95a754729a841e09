package scorer

import (
	"bytes"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlToText renders an HTML body to the text a reader would see, and
// collects link targets. Script and style contents are not text. Block
// elements end a line so that words in adjacent cells or paragraphs do not
// run together, while inline elements (<b>fr</b>ee) join as a browser would.
//
// It reads as a mail client shows mail, which is with scripts off:
// <noscript> content is text, <template> content is not. NUL bytes, which
// browsers drop, are dropped. (A browser parses <style> inside <svg> as
// markup, and shows the text of elements that break out of it; counting
// tags cannot follow HTML's tree-building rules that decide it, and
// treating such a style as markup let its CSS glue onto the next word, so
// it stays skipped: see the README's known gaps.)
func htmlToText(src string) (string, []string) {
	var b strings.Builder
	var urls []string
	z := html.NewTokenizer(strings.NewReader(src))
	skip := 0 // depth inside <script>/<style>/<title>/<template> content
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return b.String(), urls
		case html.TextToken:
			if skip == 0 {
				t := z.Text()
				if bytes.IndexByte(t, 0) >= 0 {
					t = bytes.ReplaceAll(t, []byte{0}, nil)
				}
				b.Write(t)
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			a := atom.Lookup(name)
			switch a {
			case atom.Noscript:
				z.NextIsNotRawText() // scripts are off: its content is markup
				continue
			case atom.Script, atom.Style, atom.Title, atom.Template:
				if tt == html.StartTagToken {
					skip++
				}
				// Self-closed (<style/>): in HTML that is a start tag all
				// the same, in SVG an empty element, and which one it is
				// takes HTML's tree building; the raw text the tokenizer
				// then gives is scored as it comes.
				continue
			}
			for hasAttr {
				var key, val []byte
				key, val, hasAttr = z.TagAttr()
				switch string(key) {
				case "href", "src":
					if a == atom.A || a == atom.Area || a == atom.Img || a == atom.Form {
						urls = append(urls, string(val))
					}
				case "alt":
					if a == atom.Img && len(val) > 0 {
						b.WriteByte(' ')
						b.Write(val)
						b.WriteByte(' ')
					}
				}
			}
			if blockElement(a) {
				b.WriteByte('\n')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			a := atom.Lookup(name)
			switch a {
			case atom.Noscript:
				continue
			case atom.Script, atom.Style, atom.Title, atom.Template:
				if skip > 0 {
					skip--
				}
				continue
			}
			if blockElement(a) {
				b.WriteByte('\n')
			}
		}
	}
}

func blockElement(a atom.Atom) bool {
	switch a {
	case atom.Br, atom.P, atom.Div, atom.Tr, atom.Td, atom.Th, atom.Li, atom.Ul, atom.Ol,
		atom.Table, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Blockquote,
		atom.Pre, atom.Hr, atom.Body, atom.Section, atom.Article, atom.Header, atom.Footer,
		atom.Center, atom.Form, atom.Dd, atom.Dt, atom.Address, atom.Aside, atom.Nav, atom.Main,
		atom.Figure, atom.Figcaption, atom.Details, atom.Summary, atom.Dl, atom.Fieldset,
		atom.Legend, atom.Caption, atom.Menu, atom.Dialog:
		return true
	}
	return false
}
