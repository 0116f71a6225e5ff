package koji

import "fmt"

// Fault is an XML-RPC fault returned by the hub. Use errors.Is with the
// Err* sentinels below (which follow Koji's exception hierarchy: every
// AuthExpired is also an ErrAuth, every Koji code is an ErrGeneric) or
// errors.As to get the code and message.
type Fault struct {
	Code   int
	String string
}

// Error implements error.
func (f *Fault) Error() string {
	return fmt.Sprintf("koji: %s (fault %d): %s", FaultName(f.Code), f.Code, f.String)
}

// Is reports whether f matches target: a sentinel matches every fault whose
// code is the sentinel's code or a subclass of it; another Fault matches
// when code and string are equal.
func (f *Fault) Is(target error) bool {
	t, ok := target.(*Fault)
	if !ok {
		return false
	}
	if _, sentinel := sentinels[t]; sentinel {
		for c := f.Code; c != 0; c = faultTable[c].parent {
			if c == t.Code {
				return true
			}
		}
		return false
	}
	return t.Code == f.Code && t.String == f.String
}

// Temporary reports whether retrying later may succeed (hub offline or an
// upload lock held by someone else).
func (f *Fault) Temporary() bool {
	return f.Code == CodeServerOffline || f.Code == CodeLock
}

// Koji's fault codes (koji/__init__.py).
const (
	CodeUnknown            = 1
	CodeGeneric            = 1000
	CodeLock               = 1001
	CodeAuth               = 1002
	CodeTag                = 1003
	CodeActionNotAllowed   = 1004
	CodeBuild              = 1005
	CodeAuthLock           = 1006
	CodeAuthExpired        = 1007
	CodeSequence           = 1008
	CodeRetry              = 1009
	CodePreBuild           = 1010
	CodePostBuild          = 1011
	CodeBuildroot          = 1012
	CodeFunctionDeprecated = 1013
	CodeServerOffline      = 1014
	CodeLiveCD             = 1015
	CodePlugin             = 1016
	CodeCallback           = 1017
	CodeAppliance          = 1018
	CodeParameter          = 1019
	CodeImport             = 1020
	CodeConfiguration      = 1021
	CodeLiveMedia          = 1022
	CodeGSSAPIAuth         = 1023
	CodeNameValidation     = 1024
)

type faultInfo struct {
	name   string
	parent int
}

var faultTable = map[int]faultInfo{
	CodeUnknown:            {"Fault", 0},
	CodeGeneric:            {"GenericError", 0},
	CodeLock:               {"LockError", CodeGeneric},
	CodeAuth:               {"AuthError", CodeGeneric},
	CodeTag:                {"TagError", CodeGeneric},
	CodeActionNotAllowed:   {"ActionNotAllowed", CodeGeneric},
	CodeBuild:              {"BuildError", CodeGeneric},
	CodeAuthLock:           {"AuthLockError", CodeAuth},
	CodeAuthExpired:        {"AuthExpired", CodeAuth},
	CodeSequence:           {"SequenceError", CodeAuth},
	CodeRetry:              {"RetryError", CodeAuth},
	CodePreBuild:           {"PreBuildError", CodeBuild},
	CodePostBuild:          {"PostBuildError", CodeBuild},
	CodeBuildroot:          {"BuildrootError", CodeBuild},
	CodeFunctionDeprecated: {"FunctionDeprecated", CodeGeneric},
	CodeServerOffline:      {"ServerOffline", CodeGeneric},
	CodeLiveCD:             {"LiveCDError", CodeGeneric},
	CodePlugin:             {"PluginError", CodeGeneric},
	CodeCallback:           {"CallbackError", CodePlugin},
	CodeAppliance:          {"ApplianceError", CodeGeneric},
	CodeParameter:          {"ParameterError", CodeGeneric},
	CodeImport:             {"ImportError", CodeGeneric},
	CodeConfiguration:      {"ConfigurationError", CodeGeneric},
	CodeLiveMedia:          {"LiveMediaError", CodeGeneric},
	CodeGSSAPIAuth:         {"GSSAPIAuthError", CodeAuth},
	CodeNameValidation:     {"NameValidationError", CodeGeneric},
}

// FaultName returns the name of Koji's exception class for code, or
// "Fault" for codes Koji does not define.
func FaultName(code int) string {
	if fi, ok := faultTable[code]; ok {
		return fi.name
	}
	return "Fault"
}

// Sentinels for errors.Is, one per Koji fault code.
var (
	ErrUnknownFault       = &Fault{Code: CodeUnknown}
	ErrGeneric            = &Fault{Code: CodeGeneric}
	ErrLock               = &Fault{Code: CodeLock}
	ErrAuth               = &Fault{Code: CodeAuth}
	ErrTag                = &Fault{Code: CodeTag}
	ErrActionNotAllowed   = &Fault{Code: CodeActionNotAllowed}
	ErrBuild              = &Fault{Code: CodeBuild}
	ErrAuthLock           = &Fault{Code: CodeAuthLock}
	ErrAuthExpired        = &Fault{Code: CodeAuthExpired}
	ErrSequence           = &Fault{Code: CodeSequence}
	ErrRetry              = &Fault{Code: CodeRetry}
	ErrPreBuild           = &Fault{Code: CodePreBuild}
	ErrPostBuild          = &Fault{Code: CodePostBuild}
	ErrBuildroot          = &Fault{Code: CodeBuildroot}
	ErrFunctionDeprecated = &Fault{Code: CodeFunctionDeprecated}
	ErrServerOffline      = &Fault{Code: CodeServerOffline}
	ErrLiveCD             = &Fault{Code: CodeLiveCD}
	ErrPlugin             = &Fault{Code: CodePlugin}
	ErrCallback           = &Fault{Code: CodeCallback}
	ErrAppliance          = &Fault{Code: CodeAppliance}
	ErrParameter          = &Fault{Code: CodeParameter}
	ErrImport             = &Fault{Code: CodeImport}
	ErrConfiguration      = &Fault{Code: CodeConfiguration}
	ErrLiveMedia          = &Fault{Code: CodeLiveMedia}
	ErrGSSAPIAuth         = &Fault{Code: CodeGSSAPIAuth}
	ErrNameValidation     = &Fault{Code: CodeNameValidation}
)

var sentinels = map[*Fault]struct{}{
	ErrUnknownFault: {}, ErrGeneric: {}, ErrLock: {}, ErrAuth: {}, ErrTag: {},
	ErrActionNotAllowed: {}, ErrBuild: {}, ErrAuthLock: {}, ErrAuthExpired: {},
	ErrSequence: {}, ErrRetry: {}, ErrPreBuild: {}, ErrPostBuild: {},
	ErrBuildroot: {}, ErrFunctionDeprecated: {}, ErrServerOffline: {},
	ErrLiveCD: {}, ErrPlugin: {}, ErrCallback: {}, ErrAppliance: {},
	ErrParameter: {}, ErrImport: {}, ErrConfiguration: {}, ErrLiveMedia: {},
	ErrGSSAPIAuth: {}, ErrNameValidation: {},
}
