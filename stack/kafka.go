package stack

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/kafka"
)

// kafkaPOM resolves the broker (kafka_2.13), Kafka's CLI tools and a log4j2
// backend; Kafka 4 logs through log4j2 and prints nothing without one.
const kafkaPOM = `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.assistlog</groupId><artifactId>kafka-dist</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{{V}}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{{V}}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.25.5</version></dependency>
  </dependencies>
</project>
`

const kafkaLog4j = `status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
`

func kafkaComponent() *component {
	return &component{
		name:         "kafka",
		version:      Versions.Kafka,
		readyTimeout: 90 * time.Second,
		stopGrace:    30 * time.Second,
		endpoint:     func(l Layout) string { return l.Endpoints().KafkaBrokers },
		install: func(ctx context.Context, in installer) error {
			home := in.layout.kafkaHome()
			if exists(filepath.Join(home, "libs", ".complete")) {
				return nil
			}
			tmp := home + ".partial"
			_ = os.RemoveAll(tmp)
			if err := os.MkdirAll(tmp, 0o755); err != nil {
				return err
			}
			pom := strings.ReplaceAll(kafkaPOM, "{{V}}", Versions.Kafka)
			if err := os.WriteFile(filepath.Join(tmp, "pom.xml"), []byte(pom), 0o644); err != nil {
				return err
			}
			in.log("kafka: resolving org.apache.kafka:kafka_2.13:%s and its runtime dependencies from Maven Central", Versions.Kafka)
			if err := in.maven(ctx, tmp, "install-kafka.log", "dependency:copy-dependencies",
				"-DincludeScope=runtime", "-DoutputDirectory="+filepath.Join(tmp, "libs")); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(tmp, "libs", ".complete"), nil, 0o644); err != nil {
				return err
			}
			_ = os.RemoveAll(home)
			return os.Rename(tmp, home)
		},
		prepare: func(ctx context.Context, s *Stack) error {
			dir := s.layout.componentDir("kafka")
			data := filepath.Join(dir, "data")
			p := s.layout.Ports
			props := fmt.Sprintf(`# Written by assistlog's stack: a single combined broker+controller in KRaft mode.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[2]d
listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[1]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=%[3]s
num.partitions=1
# Topics are created by the stack from internal/kafka; a typo must fail, not create a topic.
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.enable=true
`, p.Kafka, p.KafkaController, data)
			if err := writeFileAtomic(filepath.Join(dir, "server.properties"), []byte(props), 0o644); err != nil {
				return err
			}
			if err := writeFileAtomic(filepath.Join(dir, "log4j2.properties"), []byte(kafkaLog4j), 0o644); err != nil {
				return err
			}
			if exists(filepath.Join(data, "meta.properties")) {
				return nil
			}
			// Format storage once with Kafka's own StorageTool.
			cp := filepath.Join(s.layout.kafkaHome(), "libs") + "/*"
			out, err := exec.CommandContext(ctx, javaBinary(), "-cp", cp, "kafka.tools.StorageTool", "random-uuid").Output()
			if err != nil {
				return fmt.Errorf("kafka StorageTool random-uuid: %w", err)
			}
			id := strings.TrimSpace(string(out))
			fmtOut, err := exec.CommandContext(ctx, javaBinary(), "-cp", cp,
				"-Dlog4j2.configurationFile="+filepath.Join(dir, "log4j2.properties"),
				"kafka.tools.StorageTool", "format", "-t", id, "-c", filepath.Join(dir, "server.properties")).CombinedOutput()
			if err != nil {
				return fmt.Errorf("kafka StorageTool format: %w: %s", err, fmtOut)
			}
			return nil
		},
		command: func(s *Stack) (*exec.Cmd, error) {
			dir := s.layout.componentDir("kafka")
			cmd := exec.Command(javaBinary(), "-Xms512m", "-Xmx512m", "-XX:+UseG1GC",
				"-cp", filepath.Join(s.layout.kafkaHome(), "libs")+"/*",
				"-Dlog4j2.configurationFile="+filepath.Join(dir, "log4j2.properties"),
				"kafka.Kafka", filepath.Join(dir, "server.properties"))
			cmd.Dir = dir
			return cmd, nil
		},
		ready: func(ctx context.Context, s *Stack) error {
			addr := s.layout.Endpoints().KafkaBrokers
			conn, err := kafkago.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Brokers(); err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
			return nil
		},
		afterReady: func(ctx context.Context, s *Stack) error {
			return createTopics(ctx, s.layout.Endpoints().KafkaBrokers, kafka.Topics())
		},
	}
}

// createTopics creates the pipeline's topics and sets the configs
// (retention) of those that exist, so `up` stays idempotent and a stack
// made before a retention change gets it.
func createTopics(ctx context.Context, broker string, specs []kafka.TopicSpec) error {
	return kafka.EnsureTopics(ctx, broker, specs)
}

// isTestTopic: tests name their topics test-* or smoke-*, one or more per
// test and run, never reused. Left in place they piled up across runs
// (5,200 topics, 13,860 partitions after a day) until the broker's
// 512 MiB heap ran out mid-suite; `make test` prunes them before it starts.
func isTestTopic(name string) bool {
	return strings.HasPrefix(name, "test-") || strings.HasPrefix(name, "smoke-")
}

// PruneTestTopics deletes the test topics (test-*, smoke-*) the stack's
// Kafka holds and returns how many. A test using one would fail, so it is
// for a moment none runs: `make test` calls it before its first test (not on
// every start of Kafka: the fault tests restart it under their topics).
func (s *Stack) PruneTestTopics(ctx context.Context) (int, error) {
	return kafka.DeleteTopics(ctx, s.layout.Endpoints().KafkaBrokers, isTestTopic)
}

// portOpen is a cheap readiness pre-check.
func portOpen(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
