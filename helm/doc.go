// Package helm holds the deployment's tests (the helm/assistlog chart and
// docker-compose.yml) and the generator of the chart's values table. The
// Helm SDK and compose-go are heavy: keeping every test that needs them in
// this one package means `go test ./...` compiles them once.
package helm
