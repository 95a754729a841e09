package scorer

import (
	"bytes"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlToText renders an HTML body to the text a reader would see, and
// collects link targets. The page is built into a tree by the HTML
// standard's rules (x/net's parser), as a browser builds it, so that what
// is text and what is not is decided as there: a stray end tag, an
// "<svg><noembed>" or a <table> moving text out of it cannot make the
// text read here differ from the text shown. Block elements end a line so
// that words in adjacent cells or paragraphs do not run together, while
// inline elements (<b>fr</b>ee) join as a browser would.
//
// It reads as a mail client shows mail with its default style sheet and
// scripts off (see shown): <noscript> content is text; what no reader sees
// is not, so that words put there cannot poison the model or match the
// admin's phrases. A page the parser refuses (nested deeper than 512
// elements), or whose tree would cost more than the message's budget
// (treeCost), is read token by token instead (htmlTokensToText), and deep
// says so.
func htmlToText(src string) (text string, urls []string, deep bool) {
	text, urls, deep, _ = htmlToTextWithin(src, newHTMLBudget())
	return text, urls, deep
}

// htmlBudget is what building pages into trees may cost one message, in
// treeCost's measures: a message of many parts, each just under a bound,
// took seconds.
type htmlBudget struct{ copies, stackWork, rootAttrs int }

func newHTMLBudget() *htmlBudget {
	return &htmlBudget{copies: maxCopies, stackWork: maxStackWork, rootAttrs: maxRootAttrs}
}

// htmlToTextWithin is htmlToText spending from budget; a page that does
// not fit in what is left is read tag by tag. outlook is the markup of the
// page's Outlook-only conditional comments (see outlookOnly), for a
// reading of its own (htmlOutlookText), "" when it has none.
func htmlToTextWithin(src string, budget *htmlBudget) (text string, urls []string, deep bool, outlook string) {
	return htmlRead(src, budget, false)
}

// htmlOutlookText reads the markup of a page's Outlook-only conditional
// comments (htmlToTextWithin's outlook) as Outlook shows it, spending from
// budget: a page of its own, whose own conditional comments (there can be
// no complete one in a comment) are not read again, and whose <xml> data
// islands (Word's document properties) are not shown.
func htmlOutlookText(markup string, budget *htmlBudget) (text string, urls []string, deep bool) {
	text, urls, deep, _ = htmlRead(markup, budget, true)
	return text, urls, deep
}

func htmlRead(src string, budget *htmlBudget, outlook bool) (text string, urls []string, deep bool, outlookMarkup string) {
	copies, stackWork, rootAttrs := treeCost(src)
	var doc *html.Node
	if copies <= budget.copies && stackWork <= budget.stackWork && rootAttrs <= budget.rootAttrs {
		budget.copies -= copies
		budget.stackWork -= stackWork
		budget.rootAttrs -= rootAttrs
		doc, _ = html.ParseWithOptions(strings.NewReader(src), html.ParseOptionEnableScripting(false))
	}
	if doc == nil { // over budget, or refused (nested deeper than 512)
		text, urls, outlookMarkup = htmlTokensToText(src)
		if outlook {
			outlookMarkup = "" // read once: see htmlOutlookText
		}
		return text, urls, true, outlookMarkup
	}
	r := &treeReader{outlook: outlook}
	r.walk(doc, walkContext{})
	return r.b.String(), r.urls, false, r.mso.String()
}

// treeReader reads the text and links a page's tree shows.
type treeReader struct {
	b    strings.Builder
	urls []string
	// outlook: the page is the markup of Outlook-only comments (see
	// htmlOutlookText). mso collects that markup from a page that is not.
	outlook bool
	mso     strings.Builder
}

// outlookOnly returns the markup of a conditional comment that Outlook
// for Windows shows and browsers do not ("<!--[if mso]>...<![endif]-->",
// "[if gte mso 9]", "[if (gte mso 9)|(IE)]": the condition names mso and
// negates nothing), or false. Word, which renders mail in Outlook, reads
// these comments as markup; templates put Outlook's table scaffolding
// there, and a sender can put text that only Outlook users (an Exchange
// site's users) see, which the admin's BODY phrases must still find.
func outlookOnly(comment string) (string, bool) {
	c := strings.TrimLeft(comment, " \t\r\n")
	if len(c) < 3 || !strings.EqualFold(c[:3], "[if") {
		return "", false
	}
	end := strings.Index(c, "]>")
	if end < 0 {
		return "", false
	}
	cond := strings.ToLower(c[3:end])
	if !strings.Contains(cond, "mso") || strings.Contains(cond, "!") {
		return "", false
	}
	markup := c[end+2:]
	if i := strings.LastIndex(strings.ToLower(markup), "<![endif]"); i >= 0 {
		markup = markup[:i]
	}
	return markup, true
}

// walkContext is what a node's reading depends on above it.
type walkContext struct {
	// foreignText says whether text directly in the SVG or MathML element
	// being walked is drawn: SVG draws text only in <text> (and what is
	// in it), MathML only in its token elements (<mi>, <mo>, ...); HTML
	// in a <foreignObject> is HTML again.
	foreignText bool
	// inSelect: inside a <select> and not in one of its options, where
	// only options (however deep) are shown. dropDown: the <select> is a
	// drop-down, which shows one option, shownOption (nil: none).
	inSelect    bool
	dropDown    bool
	shownOption *html.Node
	// shadow is the shadow tree (a declarative shadow root, <template
	// shadowrootmode>) being walked: its host's children show where its
	// <slot>s put them.
	shadow *shadowTree
}

// shadowTree is a host's declarative shadow root, with which of its
// <slot>s shows which of the host's children: each goes to the first
// slot of its name, in tree order (the DOM standard's "find a slot").
type shadowTree struct {
	assigned    map[*html.Node][]*html.Node
	hostContext walkContext // what the host's children are read in
}

func (r *treeReader) walk(n *html.Node, ctx walkContext) {
	if r.b.Len() > MaxTextBytes {
		return // more than a message's text is kept
	}
	switch n.Type {
	case html.CommentNode:
		if r.outlook || ctx.inSelect {
			return
		}
		if markup, ok := outlookOnly(n.Data); ok && markup != "" {
			r.mso.WriteString(markup)
			r.mso.WriteByte('\n')
		}
		return
	case html.TextNode:
		p := n.Parent
		if p != nil && p.Namespace != "" && !ctx.foreignText {
			return
		}
		if ctx.inSelect {
			return // a <select> shows its options only
		}
		r.b.WriteString(strings.ReplaceAll(n.Data, "\x00", ""))
		return
	case html.ElementNode:
		// The option a drop-down shows is shown even when hidden.
		if !shown(n) && !(n.DataAtom == atom.Option && n == ctx.shownOption) {
			return
		}
		if r.outlook && n.Namespace == "" && n.Data == "xml" {
			return // a data island, which Word does not show
		}
		switch n.Namespace {
		case "":
			switch n.DataAtom {
			case atom.Select:
				ctx.inSelect = true
				ctx.shownOption, ctx.dropDown = dropDownOption(n)
			case atom.Option:
				if ctx.dropDown && n != ctx.shownOption {
					return
				}
				if label := attr(n, "label"); label != "" {
					r.b.WriteString("\n" + label + "\n") // shown instead of its text
					return
				}
				ctx.inSelect = false // its content is shown
			case atom.Optgroup:
				if label := attr(n, "label"); label != "" && ctx.inSelect && !ctx.dropDown {
					r.b.WriteString("\n" + label + "\n") // a list box shows it
				}
			case atom.Slot:
				if ctx.shadow != nil {
					r.slot(n, ctx)
					return
				}
			}
			if ctx.inSelect {
				r.children(n, n, ctx) // options in it are still options
				return
			}
			r.urls = appendLinks(r.urls, n, n.DataAtom == atom.A || n.DataAtom == atom.Area || n.DataAtom == atom.Img || n.DataAtom == atom.Form)
			if n.DataAtom == atom.Img {
				if alt := attr(n, "alt"); alt != "" {
					r.b.WriteString(" " + alt + " ")
				}
			}
			if t := shadowRoot(n); t != nil {
				inner := ctx
				inner.shadow = newShadowTree(n, t, ctx)
				r.children(n, t, inner)
				return
			}
		case "svg":
			if attr(n, "display") == "none" {
				return
			}
			r.urls = appendLinks(r.urls, n, n.Data == "a")
			switch n.Data {
			case "svg":
				ctx.foreignText = false
			case "text", "foreignObject":
				ctx.foreignText = true
			}
		case "math":
			switch n.Data {
			case "math":
				ctx.foreignText = false
			case "mi", "mn", "mo", "ms", "mtext":
				ctx.foreignText = true
			}
		}
	}
	r.children(n, n, ctx)
}

// children reads what of n's children (or, for a shadow host, of its
// shadow tree's: from) is shown, set apart from its neighbours as the
// element is: blocks on lines of their own, an SVG <text> or
// <foreignObject> (each drawn where it is placed) and a MathML space or
// table cell with a space ("<text>cheap</text><text>pills</text>" shows
// two words).
func (r *treeReader) children(n, from *html.Node, ctx walkContext) {
	sep := byte(0)
	if n.Type == html.ElementNode {
		switch {
		case n.Namespace == "" && blockElement(n.DataAtom):
			sep = '\n'
		case n.Namespace == "" && n.Data == "search":
			sep = '\n' // (not in x/net's atom table)
		case n.Namespace == "svg" && (n.Data == "text" || n.Data == "foreignObject"),
			n.Namespace == "math" && (n.Data == "mspace" || n.Data == "mtd" || n.Data == "mtr" || n.Data == "mlabeledtr"):
			sep = ' '
		}
	}
	if sep != 0 {
		r.b.WriteByte(sep)
	}
	var only *html.Node
	var closed bool
	switch {
	case n.Type == html.ElementNode && n.Namespace == "" && n.DataAtom == atom.Details && !hasAttr(n, "open"):
		closed, only = true, firstSummary(n) // a closed <details> shows its first <summary> only
	case n.Type == html.ElementNode && n.Namespace == "math" && (n.Data == "semantics" || n.Data == "maction"):
		closed, only = true, firstElement(n) // what the formula shows is its first child
	}
	for c := from.FirstChild; c != nil; c = c.NextSibling {
		if closed && c != only {
			continue
		}
		r.walk(c, ctx)
	}
	if sep != 0 {
		r.b.WriteByte(sep)
	}
}

// slot reads a <slot> of a shadow tree: the host's children assigned to
// it, else its own content (in which a slot may be filled in turn).
func (r *treeReader) slot(s *html.Node, ctx walkContext) {
	nodes, ok := ctx.shadow.assigned[s]
	if !ok {
		r.children(s, s, ctx)
		return
	}
	for _, c := range nodes {
		r.walk(c, ctx.shadow.hostContext)
	}
}

// newShadowTree assigns host's children to the slots of its shadow root
// t: each to the first slot, in tree order, named as its slot attribute
// says (the unnamed slot: children with none, and text). Nested shadow
// roots' slots are theirs.
func newShadowTree(host, t *html.Node, hostContext walkContext) *shadowTree {
	first := map[string]*html.Node{}
	var find func(n *html.Node)
	find = func(n *html.Node) {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type != html.ElementNode {
				continue
			}
			if c.Namespace == "" && c.DataAtom == atom.Slot {
				if name := attr(c, "name"); first[name] == nil {
					first[name] = c
				}
			}
			if c.Namespace == "" && c.DataAtom == atom.Template {
				continue // another tree's (or inert)
			}
			find(c)
		}
	}
	find(t)
	st := &shadowTree{assigned: map[*html.Node][]*html.Node{}, hostContext: hostContext}
	for c := host.FirstChild; c != nil; c = c.NextSibling {
		name := ""
		switch c.Type {
		case html.ElementNode:
			if c == t {
				continue
			}
			name = attr(c, "slot")
		case html.TextNode:
		default:
			continue
		}
		if s := first[name]; s != nil {
			st.assigned[s] = append(st.assigned[s], c)
		}
	}
	return st
}

// shadowRoot is an element's declarative shadow root: its first child
// <template shadowrootmode=open|closed>, where the element can host one.
// Its content is shown in place of the element's children, which show
// only where its <slot>s put them.
func shadowRoot(n *html.Node) *html.Node {
	if !canHostShadow(n) {
		return nil
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode && c.Namespace == "" && c.DataAtom == atom.Template {
			switch strings.ToLower(attr(c, "shadowrootmode")) {
			case "open", "closed":
				return c
			}
		}
	}
	return nil
}

// canHostShadow says whether an element can have a shadow root: a custom
// element or one of the DOM standard's list.
func canHostShadow(n *html.Node) bool {
	switch n.DataAtom {
	case atom.Article, atom.Aside, atom.Blockquote, atom.Body, atom.Div, atom.Footer, atom.H1,
		atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Header, atom.Main, atom.Nav, atom.P,
		atom.Section, atom.Span:
		return true
	}
	return n.DataAtom == 0 && strings.Contains(n.Data, "-")
}

func firstElement(n *html.Node) *html.Node {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode {
			return c
		}
	}
	return nil
}

// The tree builder's work can far exceed its input: formatting elements
// (<b>, <font>, <a>, ...) left open by misnested markup are copied, with
// their attributes, into every paragraph after them (the standard's
// "reconstruct the active formatting elements"; 244 KB made 4 GB), and
// each tag may walk the stack of open elements (500 <span>s, then 2 MiB of
// "</p>": 5 s). Six reviews beat five bounds that modelled which elements
// the builder keeps open; renaming the formatting elements instead
// changed the tree (a "<b hidden><div></b>" before the body hid it all).
// So treeCost models nothing: every formatting element is counted as
// open, and every element as on the stack, from its start tag on.

// maxStackWork bounds, per message, the tokens times elements that may be
// open (at most x/net's 512) of the pages built into trees: about two
// tenths of a second of x/net's work at its costliest tags ("</p>",
// "</h1>"). The costliest corpus page counts 1.2 million.
const maxStackWork = 10_000_000

// maxCopies bounds, per message, the elements and attributes the builder
// may copy (treeCost): some 200 MB at most. The costliest corpus page
// counts 1.75 million.
const maxCopies = 2_000_000

// maxRootAttrs bounds, per message, the attributes of <html> and <body>
// tags the builder merges, each tag's into the first's (it goes through
// all of them at each).
const maxRootAttrs = 200_000

// treeCost measures a page as htmlBudget spends. copies: before each text
// run and start tag, the formatting elements so far with their
// attributes (any of them may have been left open, to be copied there),
// and for each formatting end tag 32 copies of the largest (the adoption
// agency's at most 8 passes of 4). stackWork: each token times the
// elements so far that have an end tag (any may still be open), at most
// 512 (x/net refuses deeper), and the attributes of the widest start tag
// so far (which may be the current element's, gone through again), and
// for an end tag those elements again for every 4 bytes of its name.
// rootAttrs: the attributes of the <html> and
// <body> tags, each time one comes.
func treeCost(src string) (copies, stackWork, rootAttrs int) {
	z := html.NewTokenizer(strings.NewReader(src))
	started, formatting, largest, attrs := 0, 0, 0, 0
	widest := 0 // the most attributes of any start tag so far
	for stackWork <= maxStackWork && copies <= maxCopies && rootAttrs <= maxRootAttrs {
		tt := z.Next()
		// x/net may go through the current element's attributes for each
		// token (a MathML <annotation-xml>'s, for an encoding: one with
		// 100,000 attributes, then 200,000 comments, took 12 s).
		stackWork += started + widest
		switch tt {
		case html.ErrorToken:
			return copies, stackWork, rootAttrs
		case html.TextToken:
			copies += formatting
		case html.StartTagToken, html.SelfClosingTagToken:
			copies += formatting
			name, more := z.TagName()
			// What the tokenizer takes as raw text (a <noscript>'s or
			// an SVG <style>'s content) may be markup to the builder.
			z.NextIsNotRawText()
			w := 1
			for more {
				_, _, more = z.TagAttr()
				w++
			}
			widest = max(widest, w-1)
			a := atom.Lookup(name)
			if !voidElement(a) && started < 512 {
				started++
			}
			switch {
			case formattingElement(a):
				formatting += w
				largest = max(largest, w)
			case a == atom.Html || a == atom.Body:
				attrs += w
				rootAttrs += attrs
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			// In SVG and MathML an end tag is compared with each open
			// element's name, rune by rune past ASCII: 505 open elements
			// named with 49 "É"s, then 19,000 end tags, took 6.6 s.
			stackWork += started * (len(name) / 4)
			if formattingElement(atom.Lookup(name)) {
				copies += 32 * largest
			}
		}
	}
	return copies, stackWork, rootAttrs
}

// formattingElement says whether an element is one of HTML's formatting
// elements.
func formattingElement(a atom.Atom) bool {
	switch a {
	case atom.A, atom.B, atom.Big, atom.Code, atom.Em, atom.Font, atom.I, atom.Nobr,
		atom.S, atom.Small, atom.Strike, atom.Strong, atom.Tt, atom.U:
		return true
	}
	return false
}

// shown says whether an element and what it holds are shown at all by a
// browser's default style sheet with scripts off: not <script>, <style>,
// <title>, <template>, <iframe> (a frame shows its src), <noembed>,
// <noframes>, <datalist>, <rp>, a <dialog> not open, an element with the
// hidden attribute, the fallback content of <video> and <audio> (a
// <canvas> shows its own with scripts off); in SVG, <style>, <script>,
// <title>, <desc>, <metadata> and what is drawn only where it is used
// (<defs>, <symbol>, <clipPath>, <mask>, <pattern>, <marker>); in MathML,
// annotations and <mphantom>. (A page's own style sheet can show or hide
// anything: it is not followed, see the README's known gaps.)
func shown(n *html.Node) bool {
	switch n.Namespace {
	case "":
		switch n.DataAtom {
		case atom.Script, atom.Style, atom.Title, atom.Template, atom.Iframe, atom.Noembed,
			atom.Noframes, atom.Datalist, atom.Rp, atom.Video, atom.Audio, atom.Progress, atom.Meter:
			return false
		case atom.Dialog:
			if !hasAttr(n, "open") {
				return false
			}
		}
		return !hasAttr(n, "hidden")
	case "svg":
		switch n.Data {
		case "style", "script", "title", "desc", "metadata",
			// drawn only where used or referred to, not in place
			"defs", "symbol", "clipPath", "mask", "pattern", "marker":
			return false
		}
	case "math":
		switch n.Data {
		case "annotation", "annotation-xml", "mphantom":
			return false
		}
	}
	return true
}

// dropDownOption is the option a drop-down <select> (not multiple, size
// 1 or none) shows: the last one marked selected, else the first not
// disabled, or none (all disabled; a multiple one of size 1, which shows
// a count); dropDown is false for a list box, which shows them all.
// Options are found however deep (Chromium's select parsing keeps <div>s
// around them).
func dropDownOption(sel *html.Node) (shown *html.Node, dropDown bool) {
	size, sized := htmlInt(attr(sel, "size"))
	if hasAttr(sel, "multiple") {
		if sized && size == 1 {
			return nil, true
		}
		return nil, false
	}
	if sized && size > 1 {
		return nil, false
	}
	var first, selected *html.Node
	var find func(n *html.Node, disabled bool)
	find = func(n *html.Node, disabled bool) {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type != html.ElementNode || c.Namespace != "" {
				continue
			}
			switch c.DataAtom {
			case atom.Option:
				if first == nil && !disabled && !hasAttr(c, "disabled") {
					first = c
				}
				if hasAttr(c, "selected") {
					selected = c
				}
			case atom.Optgroup:
				find(c, disabled || hasAttr(c, "disabled"))
			case atom.Select, atom.Template:
			default:
				find(c, disabled)
			}
		}
	}
	find(sel, false)
	if selected != nil {
		return selected, true
	}
	return first, true
}

// htmlInt is the HTML standard's rules for parsing integers: white space,
// a sign, digits, and whatever follows them ignored ("5x" is 5).
func htmlInt(s string) (int, bool) {
	s = strings.TrimLeft(s, " \t\n\f\r")
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	n, digits := 0, 0
	for digits < len(s) && '0' <= s[digits] && s[digits] <= '9' && n < 1<<20 {
		n = n*10 + int(s[digits]-'0')
		digits++
	}
	if digits == 0 {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// appendLinks appends an element's href and src targets when it is a link.
func appendLinks(urls []string, n *html.Node, link bool) []string {
	if !link {
		return urls
	}
	for _, a := range n.Attr {
		if a.Key == "href" || a.Key == "src" {
			urls = append(urls, a.Val)
		}
	}
	return urls
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return true
		}
	}
	return false
}

func firstSummary(n *html.Node) *html.Node {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode && c.Namespace == "" && c.DataAtom == atom.Summary {
			return c
		}
	}
	return nil
}

// htmlTokensToText is htmlToText for a page the tree builder refuses
// (nested deeper than it goes): it reads the page token by token, and
// follows the HTML standard's rules only as far as tags can be counted.
// Not text are the contents of <script>, <style>, <title>, <template>,
// <iframe>, <noembed> and <noframes>, of SVG's <style>, <script>, <title>,
// <desc> and <metadata> and of MathML's annotations. A browser ignores
// "/>" on an HTML element, so "<style/>" hides what follows up to
// </style> (or the end) here as there. Inside <svg> and <math> the rules
// for foreign content apply as far as htmlForeign follows them: there
// "<style>" or "<noembed>" is an element like any other, not raw text,
// and an HTML element such as <p> ends the SVG (read as raw text up to an
// end tag that never came, one "<svg><noembed></svg>" before the body hid
// all its words and links).
func htmlTokensToText(src string) (text string, urls []string, outlook string) {
	var b, mso strings.Builder
	z := html.NewTokenizer(strings.NewReader(src))
	raw := false // the next text is a <script>, <style>, ... element's content
	tmpl := 0    // depth inside <template>, whose content is never shown
	var f htmlForeign
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return b.String(), urls, mso.String()
		case html.CommentToken:
			// As the tree reader: what Outlook alone shows, for a
			// reading of its own.
			if tmpl == 0 && f.hidden == 0 {
				if markup, ok := outlookOnly(string(z.Text())); ok && markup != "" {
					mso.WriteString(markup)
					mso.WriteByte('\n')
				}
			}
		case html.TextToken:
			if raw {
				raw = false
				continue
			}
			if tmpl == 0 && f.hidden == 0 {
				t := z.Text()
				if bytes.IndexByte(t, 0) >= 0 {
					t = bytes.ReplaceAll(t, []byte{0}, nil)
				}
				b.Write(t)
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			a := atom.Lookup(name)
			var links [][]byte
			var alt []byte
			var fontAttr, htmlEncoding bool
			for hasAttr {
				var key, val []byte
				key, val, hasAttr = z.TagAttr()
				switch string(key) {
				case "href", "src":
					links = append(links, val)
				case "alt":
					alt = val
				case "color", "face", "size":
					fontAttr = true
				case "encoding":
					htmlEncoding = strings.EqualFold(string(val), "text/html") || strings.EqualFold(string(val), "application/xhtml+xml")
				}
			}
			if f.foreign() && breaksOut(a, fontAttr) {
				f.breakOut()
				z.AllowCDATA(f.foreign())
			}
			if f.foreign() {
				// A foreign element, whatever its name: markup inside,
				// not raw text, and empty when self-closed.
				z.NextIsNotRawText()
				if tt == html.StartTagToken {
					f.push(string(name), htmlEncoding)
				}
				z.AllowCDATA(f.foreign())
				if a == atom.A && tmpl == 0 && f.hidden == 0 {
					for _, l := range links {
						urls = append(urls, string(l))
					}
				}
				continue
			}
			switch a {
			case atom.Svg, atom.Math:
				if tt == html.StartTagToken { // "<svg/>" is an empty SVG
					f.enter(string(name))
					z.AllowCDATA(true)
				}
				continue
			case atom.Noscript:
				z.NextIsNotRawText() // scripts are off: its content is markup
				continue
			case atom.Script, atom.Style, atom.Title, atom.Iframe, atom.Noembed, atom.Noframes:
				raw = true // self-closed or not: "/>" means nothing here
				continue
			case atom.Template:
				tmpl++
				continue
			}
			if tmpl == 0 && f.hidden == 0 {
				switch a {
				case atom.A, atom.Area, atom.Img, atom.Form:
					for _, l := range links {
						urls = append(urls, string(l))
					}
				}
				if a == atom.Img && len(alt) > 0 {
					b.WriteByte(' ')
					b.Write(alt)
					b.WriteByte(' ')
				}
			}
			if blockElement(a) {
				b.WriteByte('\n')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			a := atom.Lookup(name)
			if f.foreign() && (a == atom.P || a == atom.Br) {
				f.breakOut()
				z.AllowCDATA(f.foreign())
			}
			if f.depth() > 0 && f.end(string(name)) {
				z.AllowCDATA(f.foreign())
				continue
			}
			switch a {
			case atom.Script, atom.Style, atom.Title, atom.Iframe, atom.Noembed, atom.Noframes:
				raw = false // (an empty one: no text came)
				continue
			case atom.Template:
				if tmpl > 0 {
					tmpl--
				}
				continue
			case atom.Noscript, atom.Svg, atom.Math:
				continue
			}
			if blockElement(a) {
				b.WriteByte('\n')
			}
		}
	}
}

// maxForeignDepth bounds the SVG and MathML elements htmlForeign keeps
// open; deeper ones are not tracked (an end tag searches the open ones, so
// this also bounds the work per tag).
const maxForeignDepth = 64

// htmlForeign follows the open SVG and MathML elements of a page, as the
// HTML standard's tree builder does for foreign content, enough to tell
// whether a tag is read as HTML or as foreign markup, and whether text is
// shown. HTML elements inside an integration point (SVG <foreignObject>,
// MathML <mi>) are not tracked: that element's end tag closes it.
type htmlForeign struct {
	open   []foreignElement
	hidden int // how many open elements hide their content
}

type foreignElement struct {
	name   string
	html   bool // an integration point: its content is read as HTML
	hidden bool // its content is not shown
}

// enter opens <svg> or <math> from HTML content.
func (f *htmlForeign) enter(name string) { f.push(name, false) }

func (f *htmlForeign) depth() int { return len(f.open) }

// foreign says whether a tag now is foreign markup: inside SVG or MathML
// and not in an integration point.
func (f *htmlForeign) foreign() bool {
	return len(f.open) > 0 && !f.open[len(f.open)-1].html
}

func (f *htmlForeign) push(name string, htmlEncoding bool) {
	if len(f.open) >= maxForeignDepth {
		return
	}
	e := foreignElement{name: name}
	switch name {
	case "foreignobject", "mi", "mo", "mn", "ms", "mtext":
		e.html = true
	case "desc", "title":
		e.html, e.hidden = true, true
	case "annotation-xml":
		e.html, e.hidden = htmlEncoding, true
	case "style", "script", "metadata", "annotation":
		e.hidden = true
	}
	if e.hidden {
		f.hidden++
	}
	f.open = append(f.open, e)
}

// popTo closes the open elements from the innermost to the i-th.
func (f *htmlForeign) popTo(i int) {
	for _, e := range f.open[i:] {
		if e.hidden {
			f.hidden--
		}
	}
	f.open = f.open[:i]
}

// breakOut closes foreign elements up to the innermost integration point
// (or all): what an HTML element such as <p> or <div> does in foreign
// content.
func (f *htmlForeign) breakOut() {
	i := len(f.open)
	for i > 0 && !f.open[i-1].html {
		i--
	}
	f.popTo(i)
}

// end closes the innermost open element of that name, with those inside
// it, and says whether there was one. The standard walks the open
// elements only up to an HTML one (in an integration point's HTML content
// "<svg><title><p>x</svg>" leaves the SVG open); these are not tracked,
// so here such an end tag closes more than a browser's does, and text it
// hides is read rather than text it shows left unread.
func (f *htmlForeign) end(name string) bool {
	for i := len(f.open) - 1; i >= 0; i-- {
		if f.open[i].name == name {
			f.popTo(i)
			return true
		}
	}
	return false
}

// breaksOut says whether a start tag ends foreign content (the HTML
// standard's list for "in foreign content"; <font> only with color, face
// or size).
func breaksOut(a atom.Atom, fontAttr bool) bool {
	switch a {
	case atom.B, atom.Big, atom.Blockquote, atom.Body, atom.Br, atom.Center, atom.Code,
		atom.Dd, atom.Div, atom.Dl, atom.Dt, atom.Em, atom.Embed, atom.H1, atom.H2, atom.H3,
		atom.H4, atom.H5, atom.H6, atom.Head, atom.Hr, atom.I, atom.Img, atom.Li, atom.Listing,
		atom.Menu, atom.Meta, atom.Nobr, atom.Ol, atom.P, atom.Pre, atom.Ruby, atom.S,
		atom.Small, atom.Span, atom.Strong, atom.Strike, atom.Sub, atom.Sup, atom.Table,
		atom.Tt, atom.U, atom.Ul, atom.Var:
		return true
	case atom.Font:
		return fontAttr
	}
	return false
}
func blockElement(a atom.Atom) bool {
	switch a {
	case atom.Br, atom.P, atom.Div, atom.Tr, atom.Td, atom.Th, atom.Li, atom.Ul, atom.Ol,
		atom.Table, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Blockquote,
		atom.Pre, atom.Hr, atom.Body, atom.Section, atom.Article, atom.Header, atom.Footer,
		atom.Center, atom.Form, atom.Dd, atom.Dt, atom.Address, atom.Aside, atom.Nav, atom.Main,
		atom.Figure, atom.Figcaption, atom.Details, atom.Summary, atom.Dl, atom.Fieldset,
		atom.Legend, atom.Caption, atom.Menu, atom.Dialog,
		// Boxes of their own, not inline text: "<textarea>x</textarea>y"
		// shows x and y apart.
		atom.Textarea, atom.Xmp, atom.Plaintext,
		// Blocks too, though rarer: "Buy<dir>viagra</dir>" shows two words,
		// and so do a list box's options.
		atom.Dir, atom.Listing, atom.Hgroup, atom.Optgroup, atom.Option, atom.Thead,
		atom.Tbody, atom.Tfoot, atom.Frameset:
		return true
	}
	return false
}

// voidElement says whether an HTML element has no end tag.
func voidElement(a atom.Atom) bool {
	switch a {
	case atom.Area, atom.Base, atom.Br, atom.Col, atom.Embed, atom.Hr, atom.Img, atom.Input,
		atom.Link, atom.Meta, atom.Param, atom.Source, atom.Track, atom.Wbr, atom.Keygen:
		return true
	}
	return false
}
