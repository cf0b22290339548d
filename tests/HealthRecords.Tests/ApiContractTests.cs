using System.Net;
using System.Net.Http.Json;
using System.Text;
using HealthRecords.Api;

namespace HealthRecords.Tests;

/// <summary>Paging, and the problem bodies of requests the API refuses.</summary>
public class ApiContractTests
{
    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_list_is_paged_in_name_order_with_the_total()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        string[] names = ["Eve Page-Test", "Bob Page-Test", "Dan Page-Test", "Amy Page-Test", "Cid Page-Test"];
        for (var i = 0; i < names.Length; i++)
        {
            await SampleUnderAttackTests.CreateAsync(client, names[i], $"100-00-000{i}", "Paged");
        }

        var pages = new List<PatientPage>();
        for (var page = 1; page <= 4; page++)
        {
            pages.Add((await client.GetFromJsonAsync<PatientPage>($"/api/patients?page={page}&pageSize=2", Cancel))!);
        }

        Assert.All(pages, p => Assert.Equal((5, 2), (p.Total, p.PageSize)));
        Assert.Equal([1, 2, 3, 4], pages.Select(p => p.Page));
        Assert.Equal([2, 2, 1, 0], pages.Select(p => p.Items.Count));
        Assert.Equal(names.Order(StringComparer.Ordinal), pages.SelectMany(p => p.Items).Select(p => p.Name));
        Assert.Equal(PatientEndpoints.DefaultPageSize, (await client.GetFromJsonAsync<PatientPage>("/api/patients", Cancel))!.PageSize);
    }

    [Theory]
    [InlineData("GET", "/api/patients?pageSize=abc", null, "pageSize")]
    [InlineData("GET", "/api/patients?pageSize=1000", null, "pageSize")]
    [InlineData("GET", "/api/patients?page=0", null, "page")]
    [InlineData("POST", "/api/patients", "{\"name\": \"Unclosed", "name")]
    [InlineData("POST", "/api/patients", "{\"name\" \"A\"}", "body")]
    [InlineData("POST", "/api/patients", "not json", "body")]
    [InlineData("POST", "/api/patients", "{\"name\": \"A\", \"ssn\": \"1\", \"dateOfBirth\": \"yesterday\"}", "dateOfBirth")]
    [InlineData("POST", "/api/patients", "{\"name\": \"A\", \"ssn\": \" \", \"dateOfBirth\": \"1990-01-01\"}", "ssn")]
    [InlineData("POST", "/api/patients", "", "body")]
    [InlineData("POST", "/api/patients/search", "{}", "ssn")]
    [InlineData("POST", "/api/patients/search", "[1, 2]", "body")]
    [InlineData("POST", "/api/patients/1/visits", "{\"at\": 5, \"notes\": \"n\"}", "at")]
    public async Task A_malformed_request_is_refused_with_a_problem_body_naming_the_field(string method, string url, string? body, string field)
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        using var request = new HttpRequestMessage(new HttpMethod(method), url);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        using var response = await client.SendAsync(request, Cancel);

        var problem = await SampleUnderAttackTests.ProblemAsync(response, HttpStatusCode.BadRequest);
        var messages = problem.GetProperty("errors").GetProperty(field);
        Assert.False(string.IsNullOrWhiteSpace(messages[0].GetString()));
    }

    [Theory]
    [InlineData("GET", "/api/patients/424242", HttpStatusCode.NotFound)]
    [InlineData("DELETE", "/api/patients/424242", HttpStatusCode.NotFound)]
    [InlineData("DELETE", "/api/patients/424242/visits/1", HttpStatusCode.NotFound)]
    [InlineData("GET", "/api/patients/search", HttpStatusCode.MethodNotAllowed)]
    public async Task Other_refusals_have_problem_bodies_too(string method, string url, HttpStatusCode status)
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();

        using var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), url), Cancel);

        await SampleUnderAttackTests.ProblemAsync(response, status);
    }
}
