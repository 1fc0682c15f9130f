package helm_test

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/kafka"
)

// TestComposeTopicRetentionIsTheCode: docker-compose's kafka-init sets on
// each topic exactly the configs internal/kafka.Topics gives it (what
// `stack up` sets and TestTopicRetentionOnTheBroker reads back), so the one
// host keeps events, dead letters and links as long as the code says.
func TestComposeTopicRetentionIsTheCode(t *testing.T) {
	p, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	svc, ok := p.Services["kafka-init"]
	if !ok {
		t.Fatal("no kafka-init service")
	}
	script := strings.Join(svc.Command, "\n")
	alter := regexp.MustCompile(`--entity-name (\S+) --add-config (\S+)`)
	got := map[string]string{}
	for _, m := range alter.FindAllStringSubmatch(script, -1) {
		got[m[1]] = m[2]
	}
	for _, spec := range kafka.Topics() {
		var want []string
		for k, v := range spec.Configs {
			if k == "min.insync.replicas" {
				continue // a broker-durability setting, not retention
			}
			want = append(want, k+"="+v)
		}
		sort.Strings(want)
		have := strings.Split(got[spec.Name], ",")
		sort.Strings(have)
		if strings.Join(have, ",") != strings.Join(want, ",") {
			t.Errorf("kafka-init sets %s to %q, internal/kafka says %q", spec.Name, got[spec.Name], strings.Join(want, ","))
		}
	}
}
