using HealthRecords.Api;
using HealthRecords.Data;
using HealthRecords.Setup;
using Microsoft.Extensions.Options;

// "rotate" is a maintenance command, not a configuration argument: the rest of the arguments configure as usual.
var rotate = args is ["rotate", ..];
var builder = WebApplication.CreateBuilder(rotate ? args[1..] : args);

// A fixed default address, so that the README and the console agree; --urls or ASPNETCORE_URLS override it.
if (string.IsNullOrEmpty(builder.Configuration[WebHostDefaults.ServerUrlsKey]))
{
    builder.WebHost.UseUrls("http://localhost:5080");
}

builder.Services.AddHealthRecords();

// /health: can the master-key provider generate and unwrap a key right now (answered from the key cache between
// provider calls, so probing it often costs nothing)?
builder.Services.AddHealthChecks().AddEnvelopeEncryptionCheck<ClinicDbContext>(timeout: TimeSpan.FromSeconds(10));
builder.Services.AddProblemDetails(options => options.CustomizeProblemDetails = context =>
{
    // One id per request, in every error body and in the server's log lines about it (ASP.NET's own traceId would
    // be a second one to match).
    context.ProblemDetails.Extensions.Remove("traceId");
    context.ProblemDetails.Extensions[Correlation.ProblemMember] = Correlation.Id(context.HttpContext);
});

// A body or parameter that cannot be bound throws, so that ApiErrorHandler answers with a problem body instead of
// the framework's empty 400.
builder.Services.Configure<RouteHandlerOptions>(options => options.ThrowOnBadRequest = true);
builder.Services.AddExceptionHandler<ApiErrorHandler>();

var app = builder.Build();
app.Use((context, next) =>
{
    // On starting, not now: the exception handler clears the headers of a response it replaces.
    context.Response.OnStarting(() =>
    {
        context.Response.Headers[Correlation.Header] = Correlation.Id(context);
        return Task.CompletedTask;
    });
    return next(context);
});
app.UseExceptionHandler();
app.UseStatusCodePages();
app.UseDefaultFiles();
app.UseStaticFiles();
app.MapHealthRecordsApi();
app.MapHealthChecks("/health", HealthResponse.Options);

var options = app.Services.GetRequiredService<IOptions<HealthRecordsOptions>>().Value;
if (rotate)
{
    await DemoData.InitializeAsync(app.Services, seed: false, CancellationToken.None);
    return await RotateCommand.RunAsync(app.Services, Console.Out, CancellationToken.None);
}

await DemoData.InitializeAsync(app.Services, options.SeedDemoData, app.Lifetime.ApplicationStopping);

app.Lifetime.ApplicationStarted.Register(() => Banner.Print(app.Services.GetRequiredService<SampleEnvironment>(), app.Urls));
await app.RunAsync();
return 0;
