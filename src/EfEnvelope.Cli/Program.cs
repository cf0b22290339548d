using EfEnvelope.Cli;

// Arguments after "--" are the application's own (its host builder or design-time factory receives them).
var separator = Array.IndexOf(args, "--");
string[] toolArguments = separator < 0 ? args : args[..separator];
string[] applicationArguments = separator < 0 ? [] : args[(separator + 1)..];

var command = Commands.Build(applicationArguments);

// Ctrl+C and SIGTERM are handled by the commands (stop after the current batch, keep the checkpoint), not by the parser.
return await command.Parse(toolArguments).InvokeAsync(new System.CommandLine.InvocationConfiguration { ProcessTerminationTimeout = null });
