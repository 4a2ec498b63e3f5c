package AcsTest::Reg;

# Signed requests to the registration API for Test::Nginx blocks.
#
# A block gives "--- sreq eval" an array of requests, each
# [METHOD, PATH, BODY?, {sign options}?]; the preprocessor installed by
# use_signed_requests() turns them into "request" and "more_headers",
# signed with $KEY for host "localhost" (the harness's Host header).

use strict;
use AcsTest::Defaults;
use warnings;

use Exporter 'import';
use AcsTest::Hmac;

our @EXPORT = qw(use_signed_requests signed_headers official_headers
                 reg_body $KEY $KEY2 $APNS $FCM);

our $KEY  = 'dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=';
our $KEY2 = 'c2Vjb25kLWFjY2Vzcy1rZXktMDEyMzQ1Njc4OWFiY2Q=';
our $APNS = 'a1b2c3d4' x 8;
our $FCM  = 'fcm-token_1:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ-hQMRKRrZuJAEcl7B338qju59zJMjw2DELjzEvxwYv7hH5Ynpc1ODQ0aT4U4OFEeco8ohsN5PjL1iC2dNtk2BAokeMCg2ZXKqpc8FXKmhX94kIxQ';

# headers of a signed request; %o: key, date, host, content_type, sign_body
sub signed_headers {
    my ($method, $path, $body, %o) = @_;
    $body //= '';
    my $h = AcsTest::Hmac::sign(
        method => $method,
        path   => $path,
        host   => $o{host} // 'localhost',
        body   => $o{sign_body} // $body,
        key    => $o{key} // $KEY,
        (defined $o{date} ? (date => $o{date}) : ()),
    );
    my $text = $h->{headers_text};
    if (length $body || defined $o{content_type}) {
        $text .= "\nContent-Type: " . ($o{content_type} // 'application/json');
    }
    return $text;
}

# headers set by Microsoft's own @azure/communication-common credential
# policy (t/lib/acs-sign.mjs) for the request, Host included
sub official_headers {
    my ($method, $path, $body, %o) = @_;
    require JSON::PP;
    require IPC::Open2;
    my $port = $ENV{TEST_NGINX_SERVER_PORT} or die "no TEST_NGINX_SERVER_PORT";
    my $in = JSON::PP->new->canonical->encode({
        method => $method,
        url    => "http://localhost:$port$path",
        key    => $o{key} // $KEY,
        (length($body // '') ? (body => $body,
            headers => { 'Content-Type' => 'application/json' }) : ()),
    });
    my $script = __FILE__ =~ s{AcsTest/Reg\.pm$}{acs-sign.mjs}r;
    my $pid = IPC::Open2::open2(my $out, my $to, 'node', $script);
    print $to $in;
    close $to;
    local $/;
    my $json = <$out>;
    waitpid $pid, 0;
    die "acs-sign.mjs failed (exit $?): is t/node_modules installed?" if $?;
    my $h = JSON::PP->new->decode($json)->{headers};
    return join "\n", map { "$_: $h->{$_}" } sort keys %$h;
}

# a registration body
sub reg_body {
    my (%f) = @_;
    my %d = (platform => 'apns', handle => $APNS);
    for (keys %f) {
        if (defined $f{$_}) { $d{$_} = $f{$_} } else { delete $d{$_} }
    }
    return '{' . join(',', map {
        my $v = $d{$_};
        qq{"$_":} . ($v =~ /^(?:-?\d+|".*")$/ ? $v : qq{"$v"})
    } sort keys %d) . '}';
}

sub use_signed_requests {
    my ($add) = @_;
    $add->(sub {
        my $block = shift;
        return unless exists $block->{sreq};
        my $specs = $block->{sreq}[0];
        my (@req, @hdr);
        for my $s (@$specs) {
            my ($method, $path, $body, $o) = @$s;
            $body //= '';
            push @req, "$method $path" . (length $body ? "\n$body" : '');
            push @hdr, signed_headers($method, $path, $body, %{ $o // {} });
        }
        $block->set_value('request', \@req);
        $block->set_value('more_headers', \@hdr);
    });
}

1;
