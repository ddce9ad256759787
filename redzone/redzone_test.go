package redzone

import (
	"testing"
	"unsafe"
)

func TestRound(t *testing.T) {
	for _, tt := range []struct{ in, want int }{{-1, 0}, {0, 16}, {1, 16}, {16, 16}, {17, 32}, {1 << 20, Max}} {
		if got := Round(tt.in); got != tt.want {
			t.Errorf("Round(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestFillVerify(t *testing.T) {
	buf := make([]byte, 200)
	base := Addr(buf)
	for _, key := range []uint64{0, 1, 0xdeadbeef} {
		for lo := 0; lo < 9; lo++ {
			for hi := lo; hi < 60; hi += 7 {
				w := Canary(key, base)
				b := buf[lo:hi]
				Fill(b, base+uintptr(lo), w)
				if i := Verify(b, base+uintptr(lo), w); i != -1 {
					t.Fatalf("fresh fill reports byte %d", i)
				}
				for j := range b {
					b[j] ^= 1
					if i := Verify(b, base+uintptr(lo), w); i != j {
						t.Fatalf("flip at %d found at %d", j, i)
					}
					b[j] ^= 1
				}
			}
		}
	}
}

func TestPatternsKeyedAndShaped(t *testing.T) {
	c1, c2 := Canary(1, 0x1000), Canary(2, 0x1000)
	if c1 == c2 || Canary(1, 0x1000) != c1 || Canary(1, 0x2000) == c1 {
		t.Fatal("canary not keyed by key and address")
	}
	if Stopper(c1)&0xff != 0 || Stopper(c1)>>8 != c1>>8 {
		t.Fatal("stopper lacks its zero byte")
	}
	for k := uint64(0); k < 1000; k++ {
		p := Poison(k, uintptr(k*16))
		for i := 0; i < 64; i += 8 {
			if p>>i&0xff == 0 {
				t.Fatalf("poison %#x has a zero byte", p)
			}
		}
		c := Canary(k, uintptr(k*16))
		for i := 0; i < 64; i += 8 {
			if c>>i&0xff == 0 {
				t.Fatalf("canary %#x has a zero byte", c)
			}
		}
	}
}

func TestRearNulOneTooFarCaught(t *testing.T) {
	buf := make([]byte, 64)
	for lo := 0; lo < 8; lo++ {
		b := buf[lo : lo+40]
		base := Addr(b)
		w := Canary(7, base)
		FillRear(b, base, w)
		if VerifyRear(b, base, w) != -1 {
			t.Fatal("fresh rear redzone reported")
		}
		b[0] = 0 // the off-by-one NUL
		if VerifyRear(b, base, w) != 0 {
			t.Fatalf("NUL one past the end not caught (offset %d)", lo)
		}
		got := ExpectedRear(w, base, base, 40)
		FillRear(b, base, w)
		if string(got) != string(b) {
			t.Fatal("ExpectedRear disagrees with FillRear")
		}
	}
}

// TestFillZeroBytes checks the branchless zero-byte fix against the plain
// byte loop, on words with every pattern of zero bytes.
func TestFillZeroBytes(t *testing.T) {
	slow := func(w uint64, b byte) uint64 {
		for i := 0; i < 64; i += 8 {
			if w>>i&0xff == 0 {
				w |= uint64(b) << i
			}
		}
		return w
	}
	for m := range 256 {
		for _, seed := range []uint64{0x0101010101010101, 0x8080808080808080, 0xffffffffffffffff, 0x7f00ff01807f0280, 0x123456789abcdef0} {
			w := seed
			for i := range 8 {
				if m>>i&1 != 0 {
					w &^= 0xff << (8 * i)
				}
			}
			for _, b := range []byte{0x5a, 0xa5} {
				if got, want := fillZeroBytes(w, b), slow(w, b); got != want {
					t.Fatalf("fillZeroBytes(%#x, %#x) = %#x, want %#x", w, b, got, want)
				}
			}
		}
	}
}

// TestBulkFillVerify: long regions (the copy/shifted-compare path) fill
// to the same bytes as the word loop, and every single damaged byte is
// found at its own offset, at any alignment.
func TestBulkFillVerify(t *testing.T) {
	buf := make([]byte, 3000)
	for _, lo := range []int{0, 1, 7, 8, 13} {
		for _, n := range []int{bulkMin - 1, bulkMin, bulkMin + 5, 1000, 2987} {
			if lo+n > len(buf) {
				continue
			}
			b := buf[lo : lo+n]
			base := Addr(b)
			w := Poison(9, base)
			Fill(b, base, w)
			if string(b) != string(Expected(w, base, n)) {
				t.Fatalf("lo %d n %d: Fill differs from the pattern", lo, n)
			}
			for _, j := range []int{0, 5, 7, 8, 9, n / 2, n - 9, n - 8, n - 1} {
				b[j] ^= 0x20
				if i := Verify(b, base, w); i != j {
					t.Fatalf("lo %d n %d: flip at %d found at %d", lo, n, j, i)
				}
				b[j] ^= 0x20
			}
			if i := Verify(b, base, w); i != -1 {
				t.Fatalf("lo %d n %d: clean region reports %d", lo, n, i)
			}
		}
	}
}

// Arm writes what Fill and FillRear write, and Intact agrees with Verify
// and VerifyRear, for every alignment and length, and a flipped byte
// anywhere in either redzone makes Intact false.
func TestArmIntact(t *testing.T) {
	const w = 0x1122334455667788
	for fo := 0; fo < 9; fo++ {
		for nf := 0; nf <= 40; nf += 4 {
			for ro := 0; ro < 9; ro++ {
				for nr := 0; nr <= 40; nr += 3 {
					var got, want [256]byte
					gf, gr := unsafe.Pointer(&got[8+fo]), unsafe.Pointer(&got[128+ro])
					Arm(gf, uintptr(nf), gr, uintptr(nr), w)
					Fill(want[8+fo:8+fo+nf], uintptr(gf), w)
					FillRear(want[128+ro:128+ro+nr], uintptr(gr), w)
					if got != want {
						t.Fatalf("front +%d len %d, rear +%d len %d: Arm differs from Fill and FillRear", fo, nf, ro, nr)
					}
					if !Intact(gf, uintptr(nf), gr, uintptr(nr), w) {
						t.Fatalf("front +%d len %d, rear +%d len %d: fresh redzones not intact", fo, nf, ro, nr)
					}
					for i := range nf + nr {
						b := &got[8+fo+i]
						if i >= nf {
							b = &got[128+ro+i-nf]
						}
						*b ^= 0x40
						if Intact(gf, uintptr(nf), gr, uintptr(nr), w) {
							t.Fatalf("front +%d len %d, rear +%d len %d: byte %d flipped, still intact", fo, nf, ro, nr, i)
						}
						*b ^= 0x40
					}
				}
			}
		}
	}
}

// Fill and Verify agree on every length around bulkMin and every
// alignment, and a flipped byte is found where it is.
func TestFillVerifyBulk(t *testing.T) {
	const w = 0x0102030405060708
	buf := make([]byte, 4096+16)
	for off := 0; off < 9; off++ {
		for _, n := range []int{bulkMin - 1, bulkMin, bulkMin + 1, bulkMin + 7, 1000, 4096} {
			b := buf[off : off+n]
			Fill(b, Addr(b), w)
			for i := range b {
				if b[i] != At(w, Addr(b)+uintptr(i)) {
					t.Fatalf("off %d len %d: byte %d is %#x, want %#x", off, n, i, b[i], At(w, Addr(b)+uintptr(i)))
				}
			}
			if i := Verify(b, Addr(b), w); i != -1 {
				t.Fatalf("off %d len %d: Verify = %d on a fresh fill", off, n, i)
			}
			for _, i := range []int{0, 7, 8, n / 2, n - 1} {
				b[i] ^= 1
				if got := Verify(b, Addr(b), w); got != i {
					t.Fatalf("off %d len %d: byte %d flipped, Verify = %d", off, n, i, got)
				}
				b[i] ^= 1
			}
		}
	}
}

func BenchmarkFill(b *testing.B) {
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Fill(buf, Addr(buf), 0x0102030405060708)
	}
}

// TestVerifyClear: VerifyClear finds the first damaged byte exactly where
// Verify does (in the 32-byte chunk path, the 128-byte one and the tail,
// at every alignment), leaves the bytes from its chunk on as found, and
// on an intact pattern leaves all zero.
func TestVerifyClear(t *testing.T) {
	buf := make([]byte, 4096+64)
	for _, lo := range []int{0, 8, 16, 24, 3} {
		for _, n := range []int{0, 7, 511, 512, 543, 640, 1000, 4096} {
			b := buf[lo : lo+n]
			base := Addr(b)
			w := Poison(0x1234, base)
			Fill(b, base, w)
			if i := VerifyClear(b, base, w); i != -1 {
				t.Fatalf("lo %d n %d: intact poison reported at %d", lo, n, i)
			}
			for j, x := range b {
				if x != 0 {
					t.Fatalf("lo %d n %d: byte %d is %#x after VerifyClear, want 0", lo, n, j, x)
				}
			}
			for _, bad := range []int{0, 1, 31, 32, 127, 128, 129, n / 2, n - 33, n - 1} {
				if bad < 0 || bad >= n {
					continue
				}
				Fill(b, base, w)
				b[bad] ^= 0x40
				want := append([]byte(nil), b[bad&^31:]...)
				if i := VerifyClear(b, base, w); i != bad {
					t.Fatalf("lo %d n %d: damage at %d reported at %d", lo, n, bad, i)
				}
				if got := b[bad&^31:]; string(got) != string(want) {
					t.Fatalf("lo %d n %d: damage at %d: the bytes from its chunk on changed", lo, n, bad)
				}
			}
		}
	}
}
