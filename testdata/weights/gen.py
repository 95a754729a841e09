#!/usr/bin/env python3
"""Writes the weight list test files in this directory. See README."""

SAMPLE = """<?xml version="1.0" encoding="UTF-16"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="5" Text="special offer"/>
  <CustomWeightEntry Type="BODY" Change="-9" Text="Verlängertes Angebot"/>
  <CustomWeightEntry Type="SUBJECT" Change="MIN" Text="EDIT:"/>
  <CustomWeightEntry Type="BOTH" Change="MAX" Text="Offre spéciale"/>
  <CustomWeightEntry Type="body" Change="+3" Text="free"/>
  <CustomWeightEntry Type="Subject" Change="max" Text="Straße"/>
  <CustomWeightEntry Type="BOTH" Change="-2" Text="special offer"/>
  <!-- a comment, and an attribute Exchange does not have -->
  <CustomWeightEntry Type="BODY" Change="1" Text="Лучшая цена" Comment="ignored"/>
</CustomWeightEntries>
"""


def write(name, text, encoding, bom=b"", crlf=False):
    if crlf:
        text = text.replace("\n", "\r\n")
    with open(name, "wb") as f:
        f.write(bom + text.encode(encoding))


write("utf16le-bom.xml", SAMPLE, "utf-16-le", b"\xff\xfe", crlf=True)
write("utf16be-bom.xml", SAMPLE, "utf-16-be", b"\xfe\xff")
write("utf8-bom.xml", SAMPLE.replace("UTF-16", "UTF-8"), "utf-8", b"\xef\xbb\xbf", crlf=True)
write("utf8-nobom.xml", SAMPLE.replace("UTF-16", "UTF-8"), "utf-8")
# The declaration says UTF-16, the bytes are UTF-8 without a BOM.
write("decl-mismatch.xml", SAMPLE, "utf-8")
# The reverse: the declaration says UTF-8, the bytes are UTF-16 with a BOM.
write("decl-mismatch-utf16.xml", SAMPLE.replace("UTF-16", "UTF-8"), "utf-16-le", b"\xff\xfe", crlf=True)

write("no-namespace.xml", """<?xml version="1.0"?>
<CustomWeightEntries>
  <Description>Unknown elements are ignored, <b>whatever</b> they hold.</Description>
  <CustomWeightEntry Type="BODY" Change="2" Text="cheap meds"/>
  <ns:CustomWeightEntry xmlns:ns="urn:example:other" Type="SUBJECT" Change="-1" Text="invoice"/>
  <CustomWeightEntry Type="BOTH" Change="0" Text="hello">
    <FutureChild/>
  </CustomWeightEntry>
</CustomWeightEntries>
""", "utf-8")

write("bad-type.xml", """<?xml version="1.0" encoding="UTF-8"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="5" Text="a"/>
  <CustomWeightEntry Type="BODY" Change="5" Text="b"/>
  <CustomWeightEntry Type="BODY" Change="5" Text="c"/>
  <CustomWeightEntry Type="BODY" Change="5" Text="d"/>
  <CustomWeightEntry Type="BODDY" Change="5" Text="special offer"/>
  <CustomWeightEntry Type="BODY" Change="5" Text="e"/>
  <CustomWeightEntry Type="HEADER" Change="1" Text="X-Spam"/>
</CustomWeightEntries>
""", "utf-8")

write("bad-change.xml", """<?xml version="1.0" encoding="UTF-8"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="5" Text="ok"/>
  <CustomWeightEntry Type="BODY" Change="five" Text="five"/>
  <CustomWeightEntry Type="BODY" Change="" Text="nothing"/>
  <CustomWeightEntry Type="BODY" Change="99999999999" Text="huge"/>
  <CustomWeightEntry Type="BODY" Change="MAXIMUM" Text="max"/>
  <CustomWeightEntry Type="BODY" Text="no change"/>
</CustomWeightEntries>
""", "utf-8")

write("empty-text.xml", """<?xml version="1.0" encoding="UTF-8"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="1" Text="   "/>
  <CustomWeightEntry Type="BODY" Change="1" Text=""/>
  <CustomWeightEntry Type="BODY" Change="1"/>
  <CustomWeightEntry Type="BODY" Change="1" Text="&#9;&#10;"/>
  <CustomWeightEntry Type="BODY" Change="1" Text="fine"/>
</CustomWeightEntries>
""", "utf-8")

write("long-text.xml", """<?xml version="1.0" encoding="UTF-8"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="1" Text="%s"/>
  <CustomWeightEntry Type="BODY" Change="1" Text="%s"/>
</CustomWeightEntries>
""" % ("é" * 1000, "é" * 1001), "utf-8")

write("malformed.xml", """<?xml version="1.0" encoding="UTF-8"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="5" Text="fine"/>
  <CustomWeightEntry Type="BODY" Change="5" Text="fine too"/>
  <CustomWeightEntry Type="BODY" Change="5" Text="unclosed">
  <CustomWeightEntry Type="BODY" Change="5" Text="x"/>
</CustomWeightEntries>
""", "utf-8")

write("latin1.xml", """<?xml version="1.0" encoding="ISO-8859-1"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="5" Text="special offer"/>
  <CustomWeightEntry Type="BODY" Change="-9" Text="Verlängertes Angebot"/>
</CustomWeightEntries>
""", "latin-1")

# UTF-16 LE with CRLF, a multi-line entry and a bad Type on line 9, entry 4.
write("bad-utf16-line.xml", """<?xml version="1.0" encoding="UTF-16"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="5" Text="Привет"/>
  <CustomWeightEntry
      Type="BODY"
      Change="5"
      Text="a 😀 b"/>
  <CustomWeightEntry Type="BOTH" Change="MIN" Text="ok"/>
  <CustomWeightEntry Type="BODDY" Change="5" Text="special offer"/>
</CustomWeightEntries>
""", "utf-16-le", b"\xff\xfe", crlf=True)
