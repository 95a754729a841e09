package weights

// Invisible characters. A soft hyphen (U+00AD, common in German HTML and a
// known spam trick: "Ver&shy;längert"), a zero-width space or joiner, a
// word joiner, a byte order mark or a bidi control inside a phrase shows
// nothing on screen, so it must not stop the phrase from matching. They
// are the Default_Ignorable_Code_Points a renderer draws as nothing
// (Unicode's DerivedCoreProperties), variation selectors included (one
// between two letters, "cas\uFE00ino", shows as "casino" and split the
// phrase), with the musical formatting controls and the unassigned
// specials that render as nothing too; normalisation removes them, from
// text and phrases alike. The Arabic tatweel (U+0640) is dropped with
// them though it shows, as a stretch of the line between letters: it only
// lengthens a word ("مجـــاني" is "مجاني"), so it is the Arabic spammer's
// soft hyphen. They are not simple runes (see normalize.go), so they always take
// the slow path, where appendSlow drops them.
func isIgnorable(r rune) bool {
	switch {
	case r == 0x00AD, r == 0x034F, r == 0x061C, r == 0x0640, r == 0x115F, r == 0x1160, r == 0x17B4, r == 0x17B5, r == 0x180E,
		0x200B <= r && r <= 0x200F, 0x202A <= r && r <= 0x202E, 0x2060 <= r && r <= 0x206F,
		r == 0x3164, r == 0xFEFF, r == 0xFFA0, 0x1BCA0 <= r && r <= 0x1BCA3,
		0x180B <= r && r <= 0x180F, 0xFE00 <= r && r <= 0xFE0F, 0xFFF0 <= r && r <= 0xFFF8,
		0x1D173 <= r && r <= 0x1D17A, 0xE0000 <= r && r <= 0xE0FFF:
		return true
	}
	return false
}

// hasIgnorable reports whether s holds an ignorable character.
func hasIgnorable(s string) bool {
	for _, r := range s {
		if isIgnorable(r) {
			return true
		}
	}
	return false
}
