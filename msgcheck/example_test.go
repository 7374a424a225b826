package msgcheck_test

import (
	"fmt"

	"github.com/klring/klring/msgcheck"
)

// A message whose bin field claims 4 GiB it does not hold is rejected before
// any decoder allocates for it.
func ExampleCheck() {
	good := []byte{msgcheck.FixMap | 1, msgcheck.FixStr | 1, 'd', msgcheck.Bin8, 2, 0xab, 0xcd}
	lying := []byte{msgcheck.FixMap | 1, msgcheck.FixStr | 1, 'd', msgcheck.Bin32, 0xff, 0xff, 0xff, 0xff, 0xab}
	fmt.Println(msgcheck.Check(good))
	fmt.Println(msgcheck.Check(lying))
	// Output:
	// <nil>
	// msgcheck: malformed msgpack: length 4294967295 exceeds the 1 bytes left
}
