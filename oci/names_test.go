package oci_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/berthhq/berth/oci"
)

func TestValidateName(t *testing.T) {
	valid := []string{
		"a",
		"a/b",
		"a-b/c_d.e",
		"a__b",
		"a---b",
		"team/app/sub",
		"0/9",
		strings.Repeat("a", oci.MaxNameLength),
		strings.Repeat("ab/", 84) + "abc", // 255 bytes over many components
	}
	for _, name := range valid {
		t.Run("valid/"+abbrev(name), func(t *testing.T) {
			if err := oci.ValidateName(name); err != nil {
				t.Errorf("ValidateName(%q) = %v, want nil", name, err)
			}
		})
	}
	invalid := []string{
		"",
		"../x",
		"a/../b",
		"./a",
		"A/B",
		"a/B",
		"a//b",
		"/a",
		"a/",
		"a..b",
		"a___b",
		"a._b",
		"-a",
		"a-",
		"_a",
		".a",
		"a b",
		"a:b",
		"a\x00b",
		"café",
		"ａ", // fullwidth a
		strings.Repeat("a", oci.MaxNameLength+1),
		strings.Repeat("a", 1000),
	}
	for _, name := range invalid {
		t.Run("invalid/"+abbrev(name), func(t *testing.T) {
			if err := oci.ValidateName(name); !errors.Is(err, oci.ErrNameInvalid) {
				t.Errorf("ValidateName(%q) = %v, want ErrNameInvalid", name, err)
			}
		})
	}
}

func TestValidateTag(t *testing.T) {
	valid := []string{"a", "latest", "42", "v1.2.3", "_x", "1.0-rc.1", "A_b-C.d", strings.Repeat("t", 128)}
	for _, tag := range valid {
		t.Run("valid/"+abbrev(tag), func(t *testing.T) {
			if err := oci.ValidateTag(tag); err != nil {
				t.Errorf("ValidateTag(%q) = %v, want nil", tag, err)
			}
		})
	}
	invalid := []string{"", ".a", "-a", "a:b", "a/b", "a b", "a+b", "é", strings.Repeat("t", 129), "latest\n"}
	for _, tag := range invalid {
		t.Run("invalid/"+abbrev(tag), func(t *testing.T) {
			if err := oci.ValidateTag(tag); !errors.Is(err, oci.ErrTagInvalid) {
				t.Errorf("ValidateTag(%q) = %v, want ErrTagInvalid", tag, err)
			}
		})
	}
}

const hex64 = "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"

func TestParseReference(t *testing.T) {
	hex128 := strings.Repeat("0123456789abcdef", 8)
	tests := []struct {
		name    string
		in      string
		tag     string
		digest  oci.Digest
		wantErr error
	}{
		{name: "tag", in: "latest", tag: "latest"},
		{name: "numbered tag", in: "42", tag: "42"},
		{name: "sha256", in: "sha256:" + hex64, digest: oci.Digest("sha256:" + hex64)},
		{name: "sha512", in: "sha512:" + hex128, digest: oci.Digest("sha512:" + hex128)},
		{name: "md5", in: "md5:d41d8cd98f00b204e9800998ecf8427e", wantErr: oci.ErrDigestInvalid},
		{name: "unknown algorithm", in: "foo:" + hex64, wantErr: oci.ErrDigestInvalid},
		{name: "uppercase hex", in: "sha256:" + strings.ToUpper(hex64), wantErr: oci.ErrDigestInvalid},
		{name: "short hex", in: "sha256:" + hex64[:63], wantErr: oci.ErrDigestInvalid},
		{name: "long hex", in: "sha256:" + hex64 + "0", wantErr: oci.ErrDigestInvalid},
		{name: "sha512 with sha256 length", in: "sha512:" + hex64, wantErr: oci.ErrDigestInvalid},
		{name: "empty hex", in: "sha256:", wantErr: oci.ErrDigestInvalid},
		{name: "no algorithm", in: ":" + hex64, wantErr: oci.ErrDigestInvalid},
		{name: "non-hex", in: "sha256:" + strings.Repeat("g", 64), wantErr: oci.ErrDigestInvalid},
		{name: "empty", in: "", wantErr: oci.ErrTagInvalid},
		{name: "bad tag", in: "-x", wantErr: oci.ErrTagInvalid},
		{name: "tag too long", in: strings.Repeat("t", 129), wantErr: oci.ErrTagInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := oci.ParseReference(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseReference(%q) error = %v, want %v", tt.in, err, tt.wantErr)
				}
				if ref != (oci.Reference{}) {
					t.Errorf("ParseReference(%q) returned %+v with an error", tt.in, ref)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseReference(%q): %v", tt.in, err)
			}
			if ref.Tag != tt.tag || ref.Digest != tt.digest {
				t.Errorf("ParseReference(%q) = %+v, want tag %q digest %q", tt.in, ref, tt.tag, tt.digest)
			}
			if ref.IsDigest() != (tt.digest != "") {
				t.Errorf("IsDigest() = %v", ref.IsDigest())
			}
			if ref.String() != tt.in {
				t.Errorf("String() = %q, want %q", ref.String(), tt.in)
			}
		})
	}
}

func TestParseDigest(t *testing.T) {
	if _, err := oci.ParseDigest("sha256:" + hex64); err != nil {
		t.Errorf("valid sha256: %v", err)
	}
	if d := oci.FromBytes([]byte("foo\n")); d != oci.Digest("sha256:"+hex64) {
		t.Errorf("FromBytes = %s", d)
	}
	for _, s := range []string{"", "sha256", "sha384:" + strings.Repeat("a", 96), "SHA256:" + hex64} {
		if _, err := oci.ParseDigest(s); !errors.Is(err, oci.ErrDigestInvalid) {
			t.Errorf("ParseDigest(%q) = %v, want ErrDigestInvalid", s, err)
		}
	}
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"latest", "42", "sha256:" + hex64, "sha512:" + strings.Repeat("ab", 64), "md5:00", "sha256:", ":", "a:b:c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := oci.ParseReference(s)
		if err != nil {
			return
		}
		if ref.IsDigest() == (ref.Tag != "") {
			t.Fatalf("ParseReference(%q) = %+v: exactly one of tag and digest must be set", s, ref)
		}
		again, err := oci.ParseReference(ref.String())
		if err != nil || again != ref {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", s, again, err, ref)
		}
		if ref.String() != s {
			t.Fatalf("String() = %q, want the input %q", ref.String(), s)
		}
	})
}

// abbrev keeps subtest names short for very long inputs.
func abbrev(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > 40 {
		return fmt.Sprintf("%s…(%d bytes)", s[:20], len(s))
	}
	return s
}
