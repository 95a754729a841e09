package weights_test

import (
	"fmt"
	"strings"

	"github.com/sclgate/sclgate/weights"
)

func Example() {
	const file = `<?xml version="1.0" encoding="UTF-16"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="5" Text="special offer"/>
  <CustomWeightEntry Type="SUBJECT" Change="MIN" Text="EDIT:"/>
  <CustomWeightEntry Type="BOTH" Change="MAX" Text="Offre spéciale"/>
</CustomWeightEntries>`
	l, err := weights.Parse("MSExchange.UceContentFilter.xml", strings.NewReader(file))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range l.Match("re:EDIT: prices", "Our SPECIAL\r\nOFFER: OFFRE SPÉCIALE!") {
		fmt.Printf("line %d: %s %s %q\n", e.Line, e.Type, e.ChangeString(), e.Text)
	}
	// Output:
	// line 3: BODY 5 "special offer"
	// line 4: SUBJECT MIN "EDIT:"
	// line 5: BOTH MAX "Offre spéciale"
}

func ExampleParseError() {
	const file = `<CustomWeightEntries>
  <CustomWeightEntry Type="BODDY" Change="5" Text="special offer"/>
  <CustomWeightEntry Type="BODY" Change="lots" Text="free"/>
</CustomWeightEntries>`
	_, err := weights.Parse("weights.xml", strings.NewReader(file))
	fmt.Println(err)
	// Output:
	// weights: weights.xml line 2: entry 1 (Type="BODDY" Text="special offer"): unknown Type "BODDY" (want BODY, SUBJECT or BOTH)
	// weights: weights.xml line 3: entry 2 (Type="BODY" Text="free"): Change "lots" is not an integer, MIN or MAX
}
