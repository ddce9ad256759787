module github.com/hardalloc/hardalloc

go 1.24.0

require (
	github.com/AdaLogics/go-fuzz-headers v0.0.0-20240806141605-e8a1dd7889d6
	golang.org/x/sys v0.41.0
)

require github.com/dvyukov/go-fuzz v0.0.0-20220726122315-1d375ef9f9f6
