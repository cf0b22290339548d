using HealthRecords.Api;
using HealthRecords.Setup;
using Microsoft.Extensions.Options;

var builder = WebApplication.CreateBuilder(args);

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
await DemoData.InitializeAsync(app.Services, options.SeedDemoData, app.Lifetime.ApplicationStopping);

app.Lifetime.ApplicationStarted.Register(() => Banner.Print(app.Services.GetRequiredService<SampleEnvironment>(), app.Urls));
await app.RunAsync();
