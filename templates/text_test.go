package templates

import "testing"

func TestHTMLToText(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"paragraphs", "<p>One</p><p>Two</p>", "One\n\nTwo\n"},
		{"line break", "a<br>b<br/>c", "a\nb\nc\n"},
		{"white space collapses", "<p>  lots \n\t of   space </p>", "lots of space\n"},
		{"inline tags join words", "<p>bold <b>word</b>s and <i>more</i></p>", "bold words and more\n"},
		{"entities", "<p>Fish &amp; chips &lt;3 &eacute;t&eacute;</p>", "Fish & chips <3 été\n"},
		{"link keeps its URL", `<a href="https://x.example/u/tok">Unsubscribe</a>`, "Unsubscribe <https://x.example/u/tok>\n"},
		{"link whose text is the URL", `<a href="https://x.example/">https://x.example/</a>`, "https://x.example/\n"},
		{"link without text", `see <a href="https://x.example/"></a>`, "see <https://x.example/>\n"},
		{"anchor links dropped", `<a href="#top">Top</a>`, "Top\n"},
		{"script and style dropped", "<head><title>T</title><style>p{}</style></head><body><script>x()</script><p>Body</p></body>", "Body\n"},
		{"lists", "<ul><li>one</li><li>two</li></ul><p>after</p>", "- one\n- two\n\nafter\n"},
		{"headings and tables", "<h1>Title</h1><table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "Title\n\na b\nc\n"},
		{"nested links", `<a href="https://a.example/">x <a href="https://b.example/">y</a></a>`, "x y <https://b.example/> <https://a.example/>\n"},
		{"empty", "", "\n"},
	} {
		if got := htmlToText(c.in); got != c.want {
			t.Errorf("%s: htmlToText(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

func BenchmarkDeriveText(b *testing.B) {
	src := benchSources().HTML
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		DeriveText(src)
	}
}
