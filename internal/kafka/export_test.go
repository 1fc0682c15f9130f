package kafka

import kafkago "github.com/segmentio/kafka-go"

// Transport is the producer's transport, for the external tests.
func (p *Producer) Transport() kafkago.RoundTripper { return p.w.Transport }
