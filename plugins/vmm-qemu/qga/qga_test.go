package qga

import "testing"

func TestReplies(t *testing.T) {
	for in, want := range map[string]bool{
		"\xff{\"return\": 42}\n": true, "{\"return\": {}}": true, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}": true,
		"\n": false, "{}": false, "not json": false,
	} {
		_, ok, _ := ParseReply([]byte(in))
		if ok != want {
			t.Errorf("%q: %v, want %v", in, ok, want)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	f.Add([]byte("\xff{\"return\": 42}\n"))
	f.Add([]byte("{\"error\": {\"class\": \"C\", \"desc\": \"d\"}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok, err := ParseReply(b)
		if ok && (err != nil || r.Return == nil && r.Error == nil) {
			t.Fatalf("%q: ok with %v %+v", b, err, r)
		}
	})
}
