package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// Example_readme runs the README's embedding program: the body of its main, word for word between
// the markers (TestREADMEEmbedding holds the two together), in a fresh working directory.
func Example_readme() {
	defer chdirTemp()()
	// README:begin
	ctx := context.Background()
	eng, err := engine.Open(engine.Options{DataDir: "./data"})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	// An engine creates topics when asked to (or on first publish, with Options.AutoCreateTopics).
	_, err = eng.CreateTopic(wire.TopicConfig{Name: "prices", Partitions: 1})
	if err != nil && !errors.Is(err, wire.CodeTopicExists) {
		log.Fatal(err)
	}

	pub, err := eng.Publisher("prices", 0, wire.DurabilityWritten)
	if err != nil {
		log.Fatal(err)
	}
	for _, px := range []string{"1.0842", "1.0844"} {
		if _, err := pub.PublishRecord(ctx, []byte("EURUSD"), []byte(px)); err != nil {
			log.Fatal(err)
		}
	}

	sub, err := eng.SubscribeLocal(wire.Subscribe{Topic: "prices", Partition: -1, Start: wire.StartEarliest})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	for range 2 {
		rec, err := sub.NextRecord(ctx) // a view into the log, valid until the next call
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s=%s at offset %d\n", rec.Key, rec.Value, rec.Offset)
	}
	// README:end

	// Output:
	// EURUSD=1.0842 at offset 0
	// EURUSD=1.0844 at offset 1
}

// chdirTemp moves the process into a new temporary directory and returns what moves it back and
// removes the directory. Examples run one at a time, after the tests.
func chdirTemp() func() {
	old, err := os.Getwd()
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sluice-readme-")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		log.Fatal(err)
	}
	return func() {
		_ = os.Chdir(old)
		_ = os.RemoveAll(dir)
	}
}

// TestREADMEEmbedding: the README's embedding section is a whole program whose main is the body
// Example_readme runs, and whose imports this file has.
func TestREADMEEmbedding(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := regexp.MustCompile("(?s)### Embedding\n.*?```go\n(.*?)```").FindSubmatch(readme)
	if section == nil {
		t.Fatal("README has no Go block under ### Embedding")
	}
	program := string(section[1])
	m := regexp.MustCompile("(?s)\nfunc main\\(\\) \\{\n(.*)\n\\}\n$").FindStringSubmatch(program)
	if m == nil {
		t.Fatalf("the README's embedding block is not a program ending in func main:\n%s", program)
	}
	self, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "\t// README:begin\n", "\t// README:end\n"
	body := string(self)
	body = body[strings.Index(body, begin)+len(begin) : strings.Index(body, end)]
	if want := strings.TrimRight(body, "\n"); m[1] != want {
		t.Errorf("README's main differs from Example_readme.\nREADME:\n%s\nExample:\n%s", m[1], want)
	}
	for _, imp := range regexp.MustCompile(`(?m)^\s+("[^"]+")$`).FindAllString(program[:strings.Index(program, "func main")], -1) {
		if !strings.Contains(string(self), "\n"+strings.TrimSpace(imp)+"\n") && !strings.Contains(string(self), "\t"+strings.TrimSpace(imp)+"\n") {
			t.Errorf("README imports %s, which Example_readme does not use", strings.TrimSpace(imp))
		}
	}
	if !strings.HasPrefix(program, "package main\n") {
		t.Errorf("the README's embedding block does not start with package main")
	}
}
