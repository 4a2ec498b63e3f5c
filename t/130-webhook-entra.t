# acs_notify_entra: Microsoft Entra ID bearer tokens on deliveries, RS256
# against a JWKS file, issuer, audience, caller, role, lifetime, cache.
# Keys and tokens are made by the test setup (t/lib/AcsTest/Entra.pm).

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Util;
use AcsTest::Entra;
use JSON::PP ();

my $keys = AcsTest::Entra::setup(($ENV{TEST_NGINX_SERVROOT} // 't/servroot')
                                 . '/entra-keys');
$ENV{TEST_NGINX_ENTRA} = $keys->{dir};

# hostile key sets (docs/directives.md, acs_notify_entra): 400,000 levels of
# arrays in a valid set, 100,000 empty objects, 65 copies of a good key
{
    my $good = do { local (@ARGV, $/) = "$keys->{dir}/jwks.json"; <> };
    my $key = JSON::PP->new->canonical->encode(JSON::PP::decode_json($good)->{keys}[0]);
    my %f = (
        'jwks-deep.json'  => '{"keys":[' . ('[' x 400_000) . (']' x 400_000) . ']}',
        'jwks-wide.json'  => '{"keys":[' . join(',', ('{}') x 100_000) . ']}',
        'jwks-65.json'    => '{"keys":[' . join(',', ($key) x 65) . ']}',
        'jwks-64.json'    => '{"keys":[' . join(',', ($key) x 64) . ']}',
    );
    for my $name (keys %f) {
        open my $fh, '>', "$keys->{dir}/$name" or die "$name: $!";
        print $fh $f{$name};
        close $fh;
    }
}

our $T = $AcsTest::Entra::TENANT;

sub tok { AcsTest::Entra::token(@_) }

# a notification carrying "Authorization: Bearer <token(%o)>"
sub bearer {
    "aeg-event-type: Notification\nContent-Type: application/json\n"
    . "Authorization: Bearer " . tok(@_) . "\n"
}

no_shuffle();
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('config', <<'CONF') unless defined $block->config;
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
        add_header X-Result $acs_notify_result always;
    }
CONF

    $block->set_value('request', "POST /eg\n"
        . fixture('eg-chat-message-received.json'))
        unless defined $block->request || defined $block->raw_request;
});

run_tests();

__DATA__

=== TEST 1: a valid v1.0 token from Event Grid is accepted
--- more_headers eval
main::bearer()
--- error_code: 200
--- response_headers
X-Result: checked
--- no_error_log
acs_notify: rejected



=== TEST 2: a valid v2.0 token (azp, v2 issuer) is accepted
--- more_headers eval
main::bearer(version => '2.0')
--- error_code: 200



=== TEST 3: no token is refused with 401 and a Bearer challenge
--- more_headers
aeg-event-type: Notification
Content-Type: application/json
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
X-Result: rejected:token
--- response_body chomp
{"error":{"code":"token","message":"missing or invalid credential"}}
--- error_log
acs_notify: rejected 401 token: no bearer token



=== TEST 4: another authorization scheme is refused with 401
--- more_headers
aeg-event-type: Notification
Content-Type: application/json
Authorization: Basic dXNlcjpwYXNz
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: authorization is not a bearer token



=== TEST 5: a token that is not three segments is refused
--- more_headers eval
["aeg-event-type: Notification\nContent-Type: application/json\nAuthorization: Bearer abc.def",
 "aeg-event-type: Notification\nContent-Type: application/json\nAuthorization: Bearer " . main::tok() . ".x"]
--- request eval
["POST /eg\n" . fixture('eg-chat-message-received.json'),
 "POST /eg\n" . fixture('eg-chat-message-received.json')]
--- error_code eval
[401, 401]
--- grep_error_log eval
qr/rejected 401 token: token is not three segments/
--- grep_error_log_out
rejected 401 token: token is not three segments
rejected 401 token: token is not three segments



=== TEST 6: bad base64url in the header is refused
--- more_headers eval
my ($h, $p, $s) = split /\./, main::tok();
"aeg-event-type: Notification\nContent-Type: application/json\n"
. "Authorization: Bearer $h==.$p.$s"
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: bad base64url in token header



=== TEST 7: a header that is not JSON is refused
--- more_headers eval
main::bearer(raw_header => '{"alg":"RS256",')
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token header is not a JSON object



=== TEST 8: alg "none" is refused
--- more_headers eval
main::bearer(alg => 'none')
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token alg is not RS256



=== TEST 9: HS256 signed with the RSA public key as secret is refused
--- more_headers eval
main::bearer(alg => 'HS256')
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token alg is not RS256



=== TEST 10: ES256 and RS512 are refused
--- more_headers eval
[main::bearer(alg => 'ES256'), main::bearer(alg => 'RS512')]
--- request eval
["POST /eg\n" . fixture('eg-chat-message-received.json'),
 "POST /eg\n" . fixture('eg-chat-message-received.json')]
--- error_code eval
[401, 401]
--- error_log
acs_notify: rejected 401 token: token alg is not RS256



=== TEST 11: a token without kid is refused
--- more_headers eval
main::bearer(kid => undef)
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token has no kid



=== TEST 12: an unknown kid is refused
--- more_headers eval
main::bearer(kid => 'not-in-the-jwks')
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: unknown token kid



=== TEST 13: a key that is not in the configured JWKS is refused
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks-key1only.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
    }
--- more_headers eval
main::bearer(key => 'key2')
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: unknown token kid



=== TEST 14: a tampered signature is refused
--- more_headers eval
main::bearer(tamper => 'signature')
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: bad token signature



=== TEST 15: a payload changed after signing is refused
--- more_headers eval
main::bearer(tamper => 'payload')
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: bad token signature



=== TEST 16: a token signed by another key than its kid names is refused
--- more_headers eval
main::bearer(key => 'key2', kid => 'test-kid-1')
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: bad token signature



=== TEST 17: the second key of the JWKS verifies its tokens
--- more_headers eval
main::bearer(key => 'key2')
--- error_code: 200



=== TEST 18: an expired token is refused
--- more_headers eval
main::bearer(claims => { exp => time - 120 })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token expired



=== TEST 19: a token expired within the leeway is accepted
--- more_headers eval
main::bearer(claims => { exp => time - 30 })
--- error_code: 200



=== TEST 20: leeway=0 refuses a token expired a second ago
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47
                         leeway=0;
    }
--- more_headers eval
main::bearer(claims => { exp => time - 1 })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token expired



=== TEST 21: a token without exp is refused
--- more_headers eval
main::bearer(claims => { exp => undef })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token has no exp



=== TEST 22: nbf in the future beyond the leeway is refused
--- more_headers eval
main::bearer(claims => { nbf => time + 300 })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token not yet valid



=== TEST 23: nbf in the future within the leeway is accepted
--- more_headers eval
main::bearer(claims => { nbf => time + 30 })
--- error_code: 200



=== TEST 24: the issuer of another tenant is refused
--- more_headers eval
main::bearer(claims => { iss => 'https://sts.windows.net/00000000-1111-2222-3333-444444444444/' })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token issuer is not the configured tenant



=== TEST 25: an issuer without the trailing slash is refused
--- more_headers eval
main::bearer(claims => { iss => "https://sts.windows.net/$main::T" })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token issuer is not the configured tenant



=== TEST 26: a wrong audience is refused
--- more_headers eval
main::bearer(claims => { aud => 'api://someone-else' })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token audience not allowed



=== TEST 27: any of several configured audiences, and an audience array
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test,4d57fb6b-75ff-4e75-b2f1-b7788685f383
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
    }
--- more_headers eval
[main::bearer(claims => { aud => '4d57fb6b-75ff-4e75-b2f1-b7788685f383' }),
 main::bearer(claims => { aud => ['x', 'api://acs-notify-test'] }),
 main::bearer(claims => { aud => ['x', 'y'] })]
--- request eval
[("POST /eg\n" . fixture('eg-chat-message-received.json')) x 3]
--- error_code eval
[200, 200, 401]



=== TEST 28: a v1 token whose appid is not Event Grid's is refused
--- more_headers eval
main::bearer(claims => { appid => '11111111-2222-3333-4444-555555555555' })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token appid is not the configured app_id



=== TEST 29: a v2 token whose azp is not Event Grid's is refused
--- more_headers eval
main::bearer(version => '2.0', claims => { azp => '11111111-2222-3333-4444-555555555555' })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token azp is not the configured app_id



=== TEST 30: a v1 token carrying only azp is refused
--- more_headers eval
main::bearer(claims => { appid => undef, azp => '4962773b-9cdb-44cf-a8bf-237846a00ab7' })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token appid is not the configured app_id



=== TEST 31: app_id= selects another cloud's Event Grid application
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47
                         app_id=54316b56-3481-47f9-8f30-0300f5542a7b;
    }
--- more_headers eval
[main::bearer(claims => { appid => '54316b56-3481-47f9-8f30-0300f5542a7b' }),
 main::bearer()]
--- request eval
[("POST /eg\n" . fixture('eg-chat-message-received.json')) x 2]
--- error_code eval
[200, 401]



=== TEST 32: a required role must be in the token
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47
                         role=AzureEventGridSecureWebhookSubscriber;
    }
--- more_headers eval
[main::bearer(claims => { roles => ['AzureEventGridSecureWebhookSubscriber'] }),
 main::bearer(claims => { roles => ['Other'] }),
 main::bearer()]
--- request eval
[("POST /eg\n" . fixture('eg-chat-message-received.json')) x 3]
--- error_code eval
[200, 401, 401]
--- error_log
acs_notify: rejected 401 token: token lacks the required role



=== TEST 33: a token over 8 KB is refused
--- config
    large_client_header_buffers 4 32k;
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
    }
--- more_headers eval
main::bearer(claims => { padding => 'x' x 8192 })
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: token too large



=== TEST 34: a verified token is cached: RSA runs once per token
--- more_headers eval
my $h = main::bearer();
[$h, $h, $h]
--- request eval
[("POST /eg\n" . fixture('eg-chat-message-received.json')) x 3]
--- error_code eval
[200, 200, 200]
--- grep_error_log eval
qr/acs_notify: token (signature verified|found in cache)/
--- grep_error_log_out
acs_notify: token signature verified
acs_notify: token found in cache
acs_notify: token found in cache



=== TEST 35: a validation without a token is accepted when topics are allowed
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
        acs_notify_topics /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg-push-prod/providers/Microsoft.Communication/communicationServices/acs-push-demo;
    }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-validation.json')
--- error_code: 200
--- response_body chomp
{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
--- error_log
accepted without a bearer token



=== TEST 36: a validation without a token and without topics is refused
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-validation.json')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
--- error_log
acs_notify: rejected 401 token: no bearer token, and no acs_notify_topics to accept a validation without one



=== TEST 37: a validation with a bad token is refused
--- more_headers eval
"aeg-event-type: SubscriptionValidation\nContent-Type: application/json\n"
. "Authorization: Bearer " . main::tok(tamper => 'signature')
--- request eval
"POST /eg\n" . fixture('eg-validation.json')
--- error_code: 401
--- error_log
acs_notify: rejected 401 token: bad token signature



=== TEST 38: a validation with a valid token is accepted
--- more_headers eval
"aeg-event-type: SubscriptionValidation\nContent-Type: application/json\n"
. "Authorization: Bearer " . main::tok()
--- request eval
"POST /eg\n" . fixture('eg-validation.json')
--- error_code: 200
--- response_body chomp
{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}



=== TEST 39: secret and token together: both are required
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code s3cret-value-1;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
    }
--- more_headers eval
[main::bearer(), main::bearer(), main::bearer(alg => 'none')]
--- request eval
["POST /eg?code=s3cret-value-1\n" . fixture('eg-chat-message-received.json'),
 "POST /eg?code=wrong-value-0000\n" . fixture('eg-chat-message-received.json'),
 "POST /eg?code=s3cret-value-1\n" . fixture('eg-chat-message-received.json')]
--- error_code eval
[200, 401, 401]



=== TEST 40: a missing JWKS file is a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=/nonexistent/jwks.json audience=a tenant=t;
    }
--- must_die
--- error_log
acs_notify_entra: jwks "/nonexistent/jwks.json": cannot be opened



=== TEST 41: a JWKS without RSA keys is a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks-ec.json audience=a tenant=t;
    }
--- must_die
--- error_log
has no usable RSA signing key



=== TEST 42: a file that is not a JWKS is a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/key1.pub.pem audience=a tenant=t;
    }
--- must_die
--- error_log
is not a JSON Web Key Set (no "keys" array)



=== TEST 43: missing parameters are a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json audience=a;
    }
--- must_die
--- error_log
acs_notify_entra needs jwks=PATH|URL, audience=AUD and tenant=TENANT



=== TEST 44: an unknown parameter is a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json audience=a tenant=t issuer=x;
    }
--- must_die
--- error_log
acs_notify_entra: invalid parameter "issuer=x"



=== TEST 45: an invalid leeway is a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json audience=a tenant=t leeway=2h;
    }
--- must_die
--- error_log
acs_notify_entra: invalid leeway "2h", expected a time up to 1h



=== TEST 46: a CloudEvents OPTIONS handshake without a token and without topics is consented
--- request
OPTIONS /eg
--- more_headers
WebHook-Request-Origin: eventgrid.azure.net
--- error_code: 200
--- response_headers
WebHook-Allowed-Origin: eventgrid.azure.net
--- no_error_log
acs_notify: rejected



=== TEST 47: a CloudEvents OPTIONS handshake without a token is consented when topics are allowed
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
        acs_notify_topics /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/*;
    }
--- request
OPTIONS /eg
--- more_headers
WebHook-Request-Origin: eventgrid.azure.net
--- error_code: 200
--- response_headers
WebHook-Allowed-Origin: eventgrid.azure.net



=== TEST 48: a CloudEvents OPTIONS handshake does not look at a token: deliveries do
--- request eval
["OPTIONS /eg", "POST /eg\n" . fixture('eg-chat-message-received.json')]
--- more_headers eval
["WebHook-Request-Origin: eventgrid.azure.net\nAuthorization: Bearer " . main::tok(alg => 'none'),
 main::bearer(alg => 'none')]
--- error_code eval
[200, 401]
--- error_log
acs_notify: rejected 401 token: token alg is not RS256



=== TEST 49: an exp near INT64_MAX is refused as no time, without arithmetic overflow
--- more_headers eval
[main::bearer(claims => { exp => 9223372036854775807 }),
 main::bearer(claims => { exp => -1 }),
 main::bearer(claims => { nbf => 9223372036854775807 })]
--- request eval
[("POST /eg\n" . fixture('eg-chat-message-received.json')) x 3]
--- error_code eval
[401, 401, 401]
--- grep_error_log eval
qr/rejected 401 token: token (exp|nbf) is not a time/
--- grep_error_log_out
rejected 401 token: token exp is not a time
rejected 401 token: token exp is not a time
rejected 401 token: token nbf is not a time



=== TEST 50: a key set nesting 400,000 levels is a configuration error, not a crash
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks-deep.json audience=a tenant=t;
    }
--- must_die
--- error_log
entra-keys/jwks-deep.json": nests arrays and objects too deep



=== TEST 51: a key set of 100,000 values is refused before a tree is built
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks-wide.json audience=a tenant=t;
    }
--- must_die
--- error_log
jwks-wide.json": holds too many values



=== TEST 52: a key set of 65 keys is refused, one of 64 is taken
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks-65.json audience=a tenant=t;
    }
--- must_die
--- error_log
jwks-65.json": holds more keys than the 64 a set may have



=== TEST 53: 64 keys are a set
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks-64.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
    }
--- more_headers eval
main::bearer()
--- error_code: 200



=== TEST 54: a token header nesting deeper than 32 levels is refused, 32 are read
--- more_headers eval
[main::bearer(raw_header => '{"alg":"RS256","kid":"test-kid-1","x":' . ('[' x 32) . (']' x 32) . '}'),
 main::bearer(raw_header => '{"alg":"RS256","kid":"test-kid-1","x":' . ('[' x 31) . (']' x 31) . '}')]
--- request eval
[("POST /eg\n" . fixture('eg-chat-message-received.json')) x 2]
--- error_code eval
[401, 200]
--- error_log
acs_notify: rejected 401 token: token header is not a JSON object
