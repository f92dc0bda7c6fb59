// A wrapper module: gopher-lua at the version Argo CD v3.5.1 pins (its go.mod), set up the way
// Argo CD's util/lua runs a health check (tools/build-go-tools.sh builds it).
module rocky.dev/tools/argocd-lua-health

go 1.26.0

require (
	github.com/yuin/gopher-lua v1.1.2
	layeh.com/gopher-json v0.0.0-20190114024228-97fed8db8427
)
