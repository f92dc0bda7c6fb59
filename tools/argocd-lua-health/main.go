// argocd-lua-health runs an Argo CD resource health script the way Argo CD v3.5.1 runs a
// custom health check from argocd-cm (util/lua/lua.go, VM.runLuaWithResourceActionParameters
// and VM.ExecuteHealthLua, with useOpenLibs unset):
//
//   - lua.NewState with SkipOpenLibs: true, then only the package, base and table libraries
//     and Argo CD's restricted os library (os.time and os.date only) are opened: no string,
//     math, io, coroutine or debug library;
//   - the os module is also preloaded, so require("os") gives the same restricted table;
//   - a one-second execution deadline (context on the LState);
//   - the object is the Kubernetes object as Argo CD holds it (unstructured: integers are
//     int64, other numbers float64), set as the global `obj`;
//   - the chunk's return value is encoded with layeh.com/gopher-json and decoded into
//     {status, message}; a status outside Argo CD's health codes becomes Unknown with
//     "Lua returned an invalid health status"; a nil return is an empty status.
//
// Usage: argocd-lua-health SCRIPT < objects.jsonl
// One JSON object per input line; one JSON line out per object:
// {"status": ..., "message": ...} or {"error": "..."} when the script fails (what Argo CD
// then shows as an Unknown health with that error).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

// healthStatus is gitops-engine's health.HealthStatus as it is decoded from the script.
type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

// validCodes are gitops-engine's HealthStatusCode values.
var validCodes = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

// restrictedOs is the subset of the os library Argo CD exposes: time and date.
var restrictedOs = map[string]lua.LGFunction{
	"time": func(L *lua.LState) int {
		L.Push(lua.LNumber(time.Now().Unix()))
		return 1
	},
	"date": func(L *lua.LState) int {
		L.Push(lua.LString(time.Now().UTC().Format(time.RFC3339)))
		return 1
	},
}

func openRestrictedOs(L *lua.LState) int {
	L.Push(L.RegisterModule(lua.OsLibName, restrictedOs))
	return 1
}

func loadRestrictedOs(L *lua.LState) int {
	L.Push(L.SetFuncs(L.NewTable(), restrictedOs))
	return 1
}

// toLua converts a decoded JSON value the way Argo CD's decodeValue converts unstructured
// content (maps, arrays, strings, bools, int64 and float64 numbers, null).
func toLua(L *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		arr := L.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(L, item))
		}
		return arr
	case map[string]any:
		tbl := L.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), toLua(L, item))
		}
		return tbl
	}
	return lua.LNil
}

// unstructuredNumbers turns json.Number into int64 when it is an integer, else float64, as
// Kubernetes' unstructured JSON decoding does.
func unstructuredNumbers(value any) any {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = unstructuredNumbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = unstructuredNumbers(v[k])
		}
	}
	return value
}

func evaluate(script string, object map[string]any) result {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openRestrictedOs},
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			return result{Error: err.Error()}
		}
	}
	L.PreloadModule(lua.OsLibName, loadRestrictedOs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, object))

	fn, err := L.LoadString(script)
	if err == nil {
		L.Push(fn)
		err = L.PCall(0, lua.MultRet, nil)
	}
	if err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
		}
		return result{Error: err.Error()}
	}
	ret := L.Get(-1)
	switch ret.Type() {
	case lua.LTNil:
		return result{}
	case lua.LTTable:
	default:
		return result{Error: fmt.Sprintf("expect table output from Lua script, not %s", ret.Type())}
	}
	encoded, err := luajson.Encode(ret)
	if err != nil {
		return result{Error: err.Error()}
	}
	var hs healthStatus
	if err := json.Unmarshal(encoded, &hs); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Value == "array" {
			return result{} // an empty table encodes as []: an empty status
		}
		return result{Error: err.Error()}
	}
	if !validCodes[hs.Status] {
		return result{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return result{Status: hs.Status, Message: hs.Message}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua-health SCRIPT < objects.jsonl")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		line := bytes.TrimSpace(in.Bytes())
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var object map[string]any
		if err := dec.Decode(&object); err != nil {
			fmt.Fprintln(os.Stderr, "bad input line:", err)
			os.Exit(1)
		}
		unstructuredNumbers(object)
		if err := out.Encode(evaluate(string(script), object)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
