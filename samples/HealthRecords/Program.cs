using HealthRecords.Api;
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
builder.Services.AddProblemDetails();
builder.Services.AddExceptionHandler<EncryptionErrorHandler>();

var app = builder.Build();
app.UseExceptionHandler();
app.UseDefaultFiles();
app.UseStaticFiles();
app.MapHealthRecordsApi();

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
