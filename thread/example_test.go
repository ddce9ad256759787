package thread_test

import (
	"errors"
	"fmt"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/thread"
)

func Example() {
	a, _ := hardened.New(hardened.Options{})
	defer a.Close()

	t, err := thread.Start(a, func() error { return errors.New("done") }, thread.Name("worker"))
	if err != nil {
		panic(err)
	}
	fmt.Println(t.Join())
	fmt.Println(errors.Is(t.Join(), thread.ErrJoined)) // misuse is an error, never corruption
	// Output:
	// done
	// true
}
