// Command hello is the program TestEnsureGoImage ships as an image.
package main

import (
	"fmt"
	"os"

	"example.test/gohello/greet"
)

func main() {
	fmt.Println(greet.Message(), os.Getuid())
}
